"""The state machine's guard rails that the governance issue builds on."""
import pytest
from django.contrib.auth import get_user_model

from lifecycle import services
from registry.models import Integration, IntegrationStatus, IntegrationTemplate, Partner

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(demo, root_user):
    return services.integration_create(
        actor=root_user,
        tenant=demo["ke"],
        partner=Partner.objects.get(slug="acme-health"),
        integration_name="basics",
        verticals=[demo["health"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic"),
    )


def test_status_cannot_be_assigned_directly(draft):
    with pytest.raises(AttributeError):
        draft.status = IntegrationStatus.ACTIVE


def test_invalid_transition_is_409_through_the_api(api, draft, root_user):
    api.force_authenticate(root_user)
    response = api.post(f"/api/v1/governance/integrations/{draft.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_transition"
    assert Integration.objects.get(pk=draft.pk).status == IntegrationStatus.DRAFT


def test_unknown_action_and_bad_bodies_are_structured_errors(api, draft, root_user):
    api.force_authenticate(root_user)
    response = api.post(f"/api/v1/governance/integrations/{draft.pk}/launch/", {}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    services.integration_submit(integration=draft, actor=root_user)
    response = api.post(
        f"/api/v1/governance/integrations/{draft.pk}/review/", {"vertical": "health", "decision": "maybe"}, format="json"
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error" and body["errors"][0]["field"] == "decision"


def test_rejection_by_a_reviewer_needs_a_reason_and_ends_in_rejected(api, draft, root_user, demo):
    services.integration_submit(integration=draft, actor=root_user)
    api.force_authenticate(root_user)
    url = f"/api/v1/governance/integrations/{draft.pk}/review/"
    response = api.post(url, {"vertical": "health", "decision": "reject"}, format="json")
    assert response.status_code == 422
    response = api.post(url, {"vertical": "health", "decision": "reject", "reason": "purpose unclear"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert Integration.objects.get(pk=draft.pk).history.first().history_change_reason == "purpose unclear"


def test_create_refuses_verticals_outside_the_contract(api, demo, root_user):
    api.force_authenticate(root_user)
    response = api.post(
        "/api/v1/governance/integrations/",
        {"template": "health-records-basic", "tenant": "ke", "partner": "acme-health",
         "integration_name": "too wide", "verticals": ["health", "education"]},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert not Integration.objects.filter(integration_name="too wide").exists()


def test_non_root_staff_may_not_govern_yet(api, draft):
    ke_admin = get_user_model().objects.get(username="ke-admin")
    api.force_authenticate(ke_admin)
    response = api.post(f"/api/v1/governance/integrations/{draft.pk}/submit/", {}, format="json")
    assert response.status_code in (403, 404)
    assert Integration.objects.get(pk=draft.pk).status == IntegrationStatus.DRAFT
