"""Every lifecycle transition of spec §6.1 with every role, through the services and the
governance API; separation of duties; the archive lock; expiry; tenant isolation."""
import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord
from lifecycle import services
from lifecycle.models import Role, RoleAssignment
from lifecycle.tasks import expire_integrations_task
from registry.models import DataContractVersion, ImmutableError, Integration, IntegrationStatus, IntegrationTemplate, Partner
from lifecycle.curation import template_revise, template_vet
from scp_core.errors import InvalidTransitionError, PermissionDeniedError

from .agreement_helpers import sign_agreement
from .governance_helpers import new_draft, run_action, walk_to

pytestmark = pytest.mark.django_db
S = IntegrationStatus

USERS = ["root", "umbrella", "auditor", "ke-admin", "ke-health-owner", "ke-education-owner",
         "ug-admin", "ug-health-owner", "partner-user"]
OPERATORS = {"root", "umbrella", "ke-admin"}
# Who can see a ke/health integration at all; the others get 404 from the API.
SEES_KE_HEALTH = {"root", "umbrella", "auditor", "ke-admin", "ke-health-owner", "partner-user"}

# action -> (source state, target state, who may take it, a state it is invalid from)
MATRIX = {
    "submit": (S.DRAFT, S.REQUESTED, {"root", "ke-admin", "partner-user"}, S.REQUESTED),
    "review": (S.REQUESTED, S.REVIEWED, {"ke-health-owner"}, S.DRAFT),
    "approve": (S.REVIEWED, S.APPROVED, {"umbrella"}, S.REQUESTED),
    "reject": (S.REVIEWED, S.REJECTED, {"umbrella"}, S.APPROVED),
    "activate": (S.APPROVED, S.ACTIVE, OPERATORS, S.REVIEWED),
    "restrict": (S.ACTIVE, S.RESTRICTED, OPERATORS, S.APPROVED),
    "suspend": (S.ACTIVE, S.SUSPENDED, OPERATORS, S.APPROVED),
    "reinstate": (S.SUSPENDED, S.ACTIVE, OPERATORS, S.ACTIVE),
    "deprecate": (S.ACTIVE, S.DEPRECATED, OPERATORS, S.APPROVED),
    "archive": (S.DEPRECATED, S.ARCHIVED, OPERATORS, S.ACTIVE),
    "rotate-secret": (S.ACTIVE, S.ACTIVE, {"root", "ke-admin", "partner-user"}, S.APPROVED),
}
# Further sources of some transitions (spec §6.1: Active/Restricted -> Suspended, ...).
EXTRA_SOURCES = [
    ("suspend", S.RESTRICTED), ("reinstate", S.RESTRICTED), ("deprecate", S.RESTRICTED),
    ("archive", S.SUSPENDED), ("archive", S.RESTRICTED), ("suspend", S.DEPRECATED), ("archive", S.REJECTED),
]
CASES = [(action, user) for action in MATRIX for user in USERS]


def _api_body(action, integration, demo, staff):
    if action == "review":
        return {"vertical": "health", "decision": "approve"}
    if action == "reject":
        return {"reason": "not needed"}
    if action == "deprecate":
        replacement = new_draft(staff, demo, name="replacement")
        return {"replacement": str(replacement.pk)}
    return {}


@pytest.mark.parametrize("action,username", CASES)
def test_transition_through_the_service(action, username, staff, demo, keycloak_clients):
    source, target, allowed, _ = MATRIX[action]
    integration = walk_to(source, staff, demo, keycloak_clients)
    if username in allowed:
        result = run_action(action, integration, staff[username], demo)
        assert result.status == target
    else:
        with pytest.raises(PermissionDeniedError):
            run_action(action, integration, staff[username], demo)
        assert Integration.objects.get(pk=integration.pk).status == source


@pytest.mark.parametrize("action,username", CASES)
def test_transition_through_the_governance_api(action, username, api, staff, demo, keycloak_clients):
    source, target, allowed, _ = MATRIX[action]
    integration = walk_to(source, staff, demo, keycloak_clients)
    api.force_authenticate(staff[username])
    response = api.post(
        f"/api/v1/governance/integrations/{integration.pk}/{action}/",
        _api_body(action, integration, demo, staff),
        format="json",
    )
    if username in allowed:
        assert response.status_code == 200, response.content
        assert response.json()["status"] == target
        if action in {"activate", "rotate-secret"}:
            assert response.json()["client_secret"]
            assert response["Cache-Control"] == "no-store"
    elif username not in SEES_KE_HEALTH:
        # Staff of another tenant or vertical cannot even see it: not found, no hint it exists.
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    else:
        assert response.status_code == 403, response.content
        assert response.json()["code"] == "permission_denied"
    expected_type = "application/json" if response.status_code == 200 else "application/problem+json"
    assert response["Content-Type"] == expected_type
    assert Integration.objects.get(pk=integration.pk).status == (target if username in allowed else source)


@pytest.mark.parametrize("action", list(MATRIX))
def test_transition_from_a_wrong_state_is_409(action, api, staff, demo, keycloak_clients):
    _, _, allowed, wrong_state = MATRIX[action]
    actor = staff[sorted(allowed)[0]]
    integration = walk_to(wrong_state, staff, demo, keycloak_clients)
    with pytest.raises(InvalidTransitionError):
        run_action(action, integration, actor, demo)
    api.force_authenticate(actor)
    response = api.post(
        f"/api/v1/governance/integrations/{integration.pk}/{action}/",
        _api_body(action, integration, demo, staff),
        format="json",
    )
    assert response.status_code == 409 and response.json()["code"] == "invalid_transition"
    assert Integration.objects.get(pk=integration.pk).status == wrong_state


@pytest.mark.parametrize("action,source", EXTRA_SOURCES)
def test_further_sources_of_transitions(action, source, staff, demo, keycloak_clients):
    integration = walk_to(source, staff, demo, keycloak_clients)
    result = run_action(action, integration, staff["ke-admin"], demo)
    assert result.status == MATRIX[action][1]


def test_every_transition_is_recorded_in_history_and_audit(staff, demo, keycloak_clients):
    integration = walk_to(S.ARCHIVED, staff, demo, keycloak_clients)
    actions = list(
        AuditRecord.objects.filter(integration=integration, event_type=AuditEvent.INTEGRATION_TRANSITION)
        .order_by("id").values_list("details__action", "details__before", "details__after", "actor")
    )
    assert actions == [
        ("submit", "draft", "requested", "ke-admin"),
        ("review", "requested", "reviewed", "ke-health-owner"),
        ("approve", "reviewed", "approved", "umbrella"),
        ("activate", "approved", "active", "ke-admin"),
        ("deprecate", "active", "deprecated", "ke-admin"),
        ("archive", "deprecated", "archived", "ke-admin"),
    ]
    history = list(integration.history.order_by("history_date").values_list("status", flat=True))
    assert history == ["draft", "requested", "reviewed", "approved", "active", "deprecated", "archived"]
    assert AuditRecord.objects.filter(integration=integration, event_type=AuditEvent.CLIENT_SECRET_ISSUED).count() == 1


def test_every_declared_vertical_must_be_approved_before_reviewed(staff, demo):
    # A template version over two verticals, on a contract version that covers both.
    template = IntegrationTemplate.objects.get(slug="health-records-basic")
    v1 = template.data_contract
    wider = DataContractVersion.objects.create(
        contract=v1.contract, version=2,
        read_fields={**v1.read_fields, "education": {"id": "plain"}}, write_schemas=v1.write_schemas,
    )
    two = template_revise(template=template, actor=staff["umbrella"], data_contract=wider,
                          verticals=[demo["health"], demo["education"]])
    template_vet(template=two, actor=staff["umbrella"])
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=Partner.objects.get(slug="acme-health"),
        integration_name="two verticals", verticals=[demo["health"], demo["education"]], template=two,
    )
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    integration = services.integration_review(
        integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"], decision="approve"
    )
    assert integration.status == S.REQUESTED
    with pytest.raises(PermissionDeniedError):  # the health owner cannot speak for education
        services.integration_review(
            integration=integration, actor=staff["ke-health-owner"], vertical=demo["education"], decision="approve"
        )
    integration = services.integration_review(
        integration=integration, actor=staff["ke-education-owner"], vertical=demo["education"], decision="approve"
    )
    assert integration.status == S.REVIEWED


def test_a_reviewers_rejection_ends_in_rejected_with_the_reason(staff, demo):
    integration = services.integration_submit(integration=new_draft(staff, demo), actor=staff["ke-admin"])
    with pytest.raises(Exception, match="reason"):
        services.integration_review(integration=integration, actor=staff["ke-health-owner"],
                                    vertical=demo["health"], decision="reject")
    integration = services.integration_review(integration=integration, actor=staff["ke-health-owner"],
                                              vertical=demo["health"], decision="reject", reason="purpose unclear")
    assert integration.status == S.REJECTED
    assert integration.history.first().history_change_reason == "purpose unclear"


def test_umbrella_rejection_needs_a_reason(staff, demo, keycloak_clients):
    integration = walk_to(S.REVIEWED, staff, demo, keycloak_clients)
    with pytest.raises(Exception, match="reason"):
        services.integration_reject(integration=integration, actor=staff["umbrella"], reason="")


def _grant(user, role, **scope):
    RoleAssignment.objects.create(user=user, role=role, **scope)
    user.__dict__.pop("_scp_roles", None)


def test_creator_or_submitter_cannot_review(staff, demo):
    owner = staff["ke-health-owner"]
    _grant(owner, Role.TENANT_ADMIN, tenant=demo["ke"])
    integration = services.integration_submit(integration=new_draft(staff, demo, by="ke-health-owner"), actor=owner)
    with pytest.raises(PermissionDeniedError, match="created or submitted"):
        services.integration_review(integration=integration, actor=owner, vertical=demo["health"], decision="approve")


def test_reviewer_cannot_also_approve(staff, demo):
    owner = staff["ke-health-owner"]
    _grant(owner, Role.UMBRELLA_AUTHORITY)
    integration = services.integration_submit(integration=new_draft(staff, demo), actor=staff["ke-admin"])
    integration = services.integration_review(integration=integration, actor=owner, vertical=demo["health"], decision="approve")
    with pytest.raises(PermissionDeniedError, match="reviewed"):
        services.integration_approve(integration=integration, actor=owner)
    sign_agreement(integration, staff["ke-admin"])
    assert services.integration_approve(integration=integration, actor=staff["umbrella"]).status == S.APPROVED


def test_creator_cannot_approve(staff, demo):
    umbrella = staff["umbrella"]
    _grant(umbrella, Role.TENANT_ADMIN, tenant=demo["ke"])
    integration = services.integration_submit(integration=new_draft(staff, demo, by="umbrella"), actor=staff["ke-admin"])
    integration = services.integration_review(integration=integration, actor=staff["ke-health-owner"],
                                              vertical=demo["health"], decision="approve")
    with pytest.raises(PermissionDeniedError):
        services.integration_approve(integration=integration, actor=umbrella)


def test_cross_tenant_integration_needs_an_explicit_umbrella_grant(staff, demo):
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=new_draft(staff, demo).partner,
        integration_name="regional", verticals=[demo["health"]], other_tenants=[demo["ug"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic"),
    )
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    integration = services.integration_review(integration=integration, actor=staff["ke-health-owner"],
                                              vertical=demo["health"], decision="approve")
    sign_agreement(integration, staff["ke-admin"])
    with pytest.raises(Exception, match="cross-tenant"):
        services.integration_approve(integration=integration, actor=staff["umbrella"])
    integration = services.integration_approve(integration=integration, actor=staff["umbrella"], cross_tenant_grant=True)
    assert integration.status == S.APPROVED and integration.cross_tenant_granted_by == staff["umbrella"]


def test_archived_integration_cannot_be_changed_by_any_path(api, client, staff, demo, keycloak_clients):
    integration = walk_to(S.ARCHIVED, staff, demo, keycloak_clients)
    # The model refuses a save, and a change of its verticals.
    integration.integration_name = "renamed"
    with pytest.raises(ImmutableError):
        integration.save()
    with pytest.raises(ImmutableError), transaction.atomic():
        integration.verticals.add(demo["education"])
    # Every governance action is refused.
    api.force_authenticate(staff["ke-admin"])
    for action in ["submit", "activate", "reinstate", "suspend", "archive", "rotate-secret"]:
        response = api.post(f"/api/v1/governance/integrations/{integration.pk}/{action}/", {}, format="json")
        assert response.status_code == 409, action
    # The admin offers no change: the form is read-only and a forged POST is refused.
    client.force_login(staff["root"])
    url = f"/admin/registry/integration/{integration.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and b'name="integration_name"' not in page.content
    assert client.post(url, {"integration_name": "renamed"}).status_code == 403
    integration.refresh_from_db()
    assert integration.integration_name == "governed" and integration.status == S.ARCHIVED


def test_integration_past_active_until_is_moved_out_of_active_with_a_reason(staff, demo, keycloak_clients):
    integration = walk_to(S.ACTIVE, staff, demo, keycloak_clients)
    Integration.objects.filter(pk=integration.pk).update(active_until=timezone.now() - datetime.timedelta(minutes=1))
    assert expire_integrations_task() == 1
    integration.refresh_from_db()
    assert integration.status == S.SUSPENDED
    record = AuditRecord.objects.filter(integration=integration).latest("id")
    assert record.actor == "system" and "active_until" in record.details["reason"]


def test_template_versions_keep_what_integrations_were_approved_on(staff, demo, keycloak_clients):
    integration = walk_to(S.ACTIVE, staff, demo, keycloak_clients)
    assert integration.newer_template is None
    template = integration.template
    with pytest.raises(PermissionDeniedError):
        template_revise(template=template, actor=staff["ke-admin"], purpose="wider")
    v2 = template_revise(template=template, actor=staff["umbrella"], purpose="Revised purpose")
    assert v2.version == 2 and not v2.is_vetted
    assert Integration.objects.get(pk=integration.pk).newer_template is None  # not vetted yet
    with pytest.raises(Exception, match="not vetted"):
        services.integration_create(actor=staff["ke-admin"], tenant=demo["ke"], partner=integration.partner,
                                    integration_name="x", verticals=[demo["health"]], template=v2)
    template_vet(template=v2, actor=staff["umbrella"])
    integration = Integration.objects.get(pk=integration.pk)
    assert integration.template.version == 1 and integration.newer_template == v2


def test_a_referenced_data_contract_version_is_immutable(demo):
    contract = IntegrationTemplate.objects.get(slug="health-records-basic").data_contract
    contract.read_fields = {"health": {"id": "plain", "phone": "plain"}}
    with pytest.raises(ImmutableError):
        contract.save()


def test_umbrella_revises_a_template_from_the_portal_into_an_unvetted_new_version(client, staff, demo):
    template = IntegrationTemplate.objects.get(slug="health-records-basic", version=1)
    contract = template.data_contract
    newer = DataContractVersion.objects.create(contract=contract.contract, version=contract.version + 1,
                                               read_fields=contract.read_fields, write_schemas=contract.write_schemas)
    change_url = f"/admin/registry/integrationtemplate/{template.pk}/change/"
    revise_url = f"/admin/registry/integrationtemplate/{template.pk}/revise/"
    # Only the umbrella authority is offered and allowed the revision
    client.force_login(staff["ke-admin"])
    assert client.get(revise_url).status_code == 403
    client.force_login(staff["umbrella"])
    assert revise_url in client.get(change_url).content.decode()
    form = client.get(revise_url)
    assert form.status_code == 200 and template.name in form.content.decode()
    # When it revises with the newer contract version
    response = client.post(revise_url, {"name": template.name, "purpose": "Immunization records, contract v2",
                                        "data_contract": newer.pk, "verticals": [demo["health"].pk]})
    # Then a new, unvetted version exists and the original is untouched
    revised = IntegrationTemplate.objects.get(slug=template.slug, version=2)
    assert response.status_code == 302 and response["Location"].endswith(f"/{revised.pk}/change/")
    assert (revised.data_contract, revised.is_vetted, revised.purpose) == (newer, False, "Immunization records, contract v2")
    template.refresh_from_db()
    assert template.data_contract == contract and template.is_vetted
    assert AuditRecord.objects.filter(event_type=AuditEvent.TEMPLATE_CHANGED, actor="umbrella",
                                      details__version=2).exists()
