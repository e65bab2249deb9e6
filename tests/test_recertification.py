"""Recertification campaigns (issue #14 item 3): opened on the tenant's interval, answered by
the vertical owners (confirm, narrow, revoke), lapsing to Restricted then Suspended."""
import datetime

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord
from lifecycle import recertification as recert
from lifecycle import services
from lifecycle.models import Notification, NotificationEvent, Recertification, RecertificationStatus, Role, RoleAssignment
from registry.models import IntegrationStatus
from scp_core.errors import InvalidTransitionError, PermissionDeniedError, ValidationFailedError
from scp_core.models import ConsentStatus
from scp_portal.monitoring import compliance

from .conftest import make_person, user_token
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db

S = IntegrationStatus
R = RecertificationStatus
DAY = datetime.timedelta(days=1)


@pytest.fixture
def partnered(staff, demo, keycloak_clients):
    return activate(staff, demo, keycloak_clients, name="recertified")


def _open(partnered):
    """Its health owner approved it 180 days ago (the tenant's interval): due now, not a day earlier."""
    integration = partnered.refresh()
    review = integration.vertical_reviews.get()
    review.decided_at = timezone.now() - datetime.timedelta(days=integration.tenant.recertification_interval_days)
    review.save()
    at = review.decided_at + datetime.timedelta(days=180)
    assert recert.sweep(at - DAY)["opened"] == 0
    assert recert.sweep(at)["opened"] == 1
    return Recertification.objects.get(integration=partnered.integration), at


def test_recertification_opens_after_the_tenants_interval_once_with_what_the_owner_weighs(partnered, staff):
    recertification, at = _open(partnered)
    assert recert.sweep(at + DAY)["opened"] == 0  # one open at a time
    assert recertification.status == R.OPEN
    assert recertification.due_at == at + datetime.timedelta(days=14)
    snapshot = recertification.snapshot
    assert snapshot["purpose_code"] == "public_health_reporting"
    assert snapshot["fields"]["national_id"] == "last:4"
    assert {"last_use", "requests", "releases", "since"} <= set(snapshot)
    assert AuditRecord.objects.filter(event_type=AuditEvent.RECERTIFICATION_OPENED, integration=partnered.integration).count() == 1
    told = Notification.objects.filter(event=NotificationEvent.RECERTIFICATION_DUE)
    assert [n.recipient for n in told] == [staff["ke-health-owner"].email]


def test_no_recertification_where_the_tenant_sets_no_interval(partnered, demo):
    demo["ke"].recertification_interval_days = None
    demo["ke"].save()
    assert recert.sweep(timezone.now() + 1000 * DAY)["opened"] == 0


def test_owner_confirms_and_the_next_one_counts_from_the_answer(partnered, staff):
    recertification, at = _open(partnered)
    answered = recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"],
                                             decision="confirm", reason="still needed for reporting")
    assert answered.status == R.CONFIRMED and answered.answered_by == staff["ke-health-owner"]
    assert partnered.refresh().status == S.ACTIVE
    record = AuditRecord.objects.get(event_type=AuditEvent.RECERTIFICATION_ANSWERED)
    assert record.details["decision"] == "confirm" and record.actor == "ke-health-owner"
    # counted from the answer, not from the review (by which it would be a month overdue)
    assert recert.sweep(at + 30 * DAY)["opened"] == 0
    assert recert.sweep(answered.answered_at + 180 * DAY)["opened"] == 1
    with pytest.raises(InvalidTransitionError):
        recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="revoke",
                                      reason="again")


def test_narrowing_takes_effect_on_the_next_exchange_request(partnered, staff, demo, api):
    person = make_person(demo["ke"], "KE-NARROW-1", consents=[(demo["health"], ConsentStatus.GRANTED)])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partnered.token}")
    before = api.get(f"/api/v1/persons/{person.pk}/?vertical=health")
    assert before.status_code == 200 and "national_id" in before.json()
    recertification, _ = _open(partnered)
    with pytest.raises(ValidationFailedError):  # never widen: a field outside its scope
        recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"],
                                      decision="narrow", approved_fields=["id", "phone"])
    with pytest.raises(ValidationFailedError):  # a narrowing keeps fewer fields than now
        recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"],
                                      decision="narrow", approved_fields=sorted(
                                          {**recertification.snapshot["fields"], **recertification.snapshot["record_fields"]}))
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"],
                                  decision="narrow", approved_fields=["id", "district"], reason="less is enough")
    after = api.get(f"/api/v1/persons/{person.pk}/?vertical=health")
    assert after.status_code == 200
    assert set(after.json()) == {"id", "district"}
    assert set(partnered.refresh().read_scope["health"]) == {"id", "district"}
    assert partnered.integration.history.first().history_change_reason.startswith("narrowed at recertification")


def test_revoking_suspends_the_integration_with_the_owners_reason(partnered, staff, api):
    recertification, _ = _open(partnered)
    with pytest.raises(ValidationFailedError):
        recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="revoke")
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="revoke",
                                  reason="programme ended")
    assert partnered.refresh().status == S.SUSPENDED
    transition = AuditRecord.objects.filter(event_type=AuditEvent.INTEGRATION_TRANSITION).latest("id")
    assert "programme ended" in transition.details["reason"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partnered.token}")
    assert api.get("/api/v1/persons/?vertical=health").json()["code"] == "integration_suspended"


def test_unanswered_recertification_restricts_then_suspends_each_step_recorded(partnered, staff):
    recertification, at = _open(partnered)
    due = recertification.due_at
    assert recert.sweep(due - DAY)["lapsed"] == 0
    assert recert.sweep(due)["lapsed"] == 1
    assert partnered.refresh().status == S.RESTRICTED
    assert recert.sweep(due + DAY)["lapsed"] == 0  # restricted once
    assert recert.sweep(due + 14 * DAY)["lapsed"] == 1
    assert partnered.refresh().status == S.SUSPENDED
    recertification.refresh_from_db()
    assert recertification.status == R.LAPSED and recertification.lapse_stage == "suspended"
    stages = [r.details["stage"] for r in AuditRecord.objects.filter(event_type=AuditEvent.RECERTIFICATION_LAPSED).order_by("id")]
    assert stages == ["restricted", "suspended"]
    reasons = [r.details["reason"] for r in AuditRecord.objects.filter(
        event_type=AuditEvent.INTEGRATION_TRANSITION, actor="system").order_by("id")]
    assert len(reasons) == 2 and all("recertification of health unanswered" in r for r in reasons)
    # and the partner was told of each step
    events = set(Notification.objects.filter(integration=partnered.integration).values_list("event", flat=True))
    assert {NotificationEvent.RESTRICTED, NotificationEvent.SUSPENDED} <= events


def test_a_late_confirmation_lifts_the_lapse_restriction(partnered, staff):
    recertification, _ = _open(partnered)
    recert.sweep(recertification.due_at)
    assert partnered.refresh().status == S.RESTRICTED
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="confirm")
    assert partnered.refresh().status == S.ACTIVE
    assert recert.sweep(recertification.due_at + 14 * DAY)["lapsed"] == 0


@pytest.mark.parametrize("username", ["ke-education-owner", "ke-admin", "auditor", "umbrella", "root", "ug-health-owner",
                                      "partner-user"])
def test_only_the_owner_of_the_vertical_may_answer(partnered, staff, username):
    recertification, _ = _open(partnered)
    with pytest.raises(PermissionDeniedError):
        recert.recertification_answer(recertification=recertification, actor=staff[username], decision="confirm")


def test_governance_api_lists_in_scope_and_answers_through_the_service(partnered, staff, api):
    recertification, _ = _open(partnered)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token('ug-health-owner')}")
    assert api.get("/api/v1/governance/recertifications/").json() == []
    refused = api.post(f"/api/v1/governance/recertifications/{recertification.pk}/answer/", {"decision": "confirm"},
                       format="json")
    assert refused.status_code == 404
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token('auditor')}")
    assert [r["id"] for r in api.get("/api/v1/governance/recertifications/").json()] == [recertification.pk]
    denied = api.post(f"/api/v1/governance/recertifications/{recertification.pk}/answer/", {"decision": "confirm"},
                      format="json")
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token('ke-health-owner')}")
    listed = api.get("/api/v1/governance/recertifications/?status=open").json()
    assert listed[0]["snapshot"]["fields"]["national_id"] == "last:4"
    bad = api.post(f"/api/v1/governance/recertifications/{recertification.pk}/answer/", {"decision": "maybe"}, format="json")
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    ok = api.post(f"/api/v1/governance/recertifications/{recertification.pk}/answer/",
                  {"decision": "confirm", "reason": "needed"}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "confirmed"


def test_compliance_lists_overdue_recertifications(partnered):
    recertification, _ = _open(partnered)
    recert.sweep(recertification.due_at)
    items = compliance(tenant_ids=None, now=recertification.due_at + DAY)
    assert any("recertification of health overdue, integration restricted" in reason for _, reason, _ in items)


def test_a_long_reason_is_recorded_whole_in_the_audit_and_cut_only_in_the_history(partnered, staff):
    recertification, _ = _open(partnered)
    reason = "The programme that needed this exchange ended in June; the ministry confirmed no further reporting. " * 3
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="revoke",
                                  reason=reason)
    assert partnered.refresh().status == S.SUSPENDED
    assert AuditRecord.objects.get(event_type=AuditEvent.RECERTIFICATION_ANSWERED).details["reason"] == reason
    assert len(partnered.integration.history.first().history_change_reason) <= 100


def test_a_lapse_never_lifts_a_restriction_an_administrator_imposed(partnered, staff):
    recertification, _ = _open(partnered)
    services.integration_restrict(integration=partnered.refresh(), actor=staff["ke-admin"], reason="violation found")
    recert.sweep(recertification.due_at)  # overdue: noted, nothing more to restrict
    recertification.refresh_from_db()
    assert recertification.lapse_stage == "overdue"
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="confirm")
    assert partnered.refresh().status == S.RESTRICTED  # the administrator's restriction stands


def test_a_revoked_integration_cannot_be_reinstated(partnered, staff):
    recertification, _ = _open(partnered)
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="revoke",
                                  reason="no longer needed")
    with pytest.raises(InvalidTransitionError, match="revoked"):
        services.integration_reinstate(integration=partnered.refresh(), actor=staff["ke-admin"])
    assert partnered.refresh().status == S.SUSPENDED


def test_a_lapsed_integration_is_reinstated_only_after_its_owner_answers(partnered, staff):
    recertification, _ = _open(partnered)
    recert.sweep(recertification.due_at)
    recert.sweep(recertification.due_at + 14 * DAY)
    assert partnered.refresh().status == S.SUSPENDED
    with pytest.raises(InvalidTransitionError, match="lapsed"):
        services.integration_reinstate(integration=partnered.refresh(), actor=staff["ke-admin"])
    recert.recertification_answer(recertification=recertification, actor=staff["ke-health-owner"], decision="confirm",
                                  reason="still needed, sorry for the delay")
    assert partnered.refresh().status == S.SUSPENDED  # the owner's late answer unblocks; the admin reinstates
    services.integration_reinstate(integration=partnered.refresh(), actor=staff["ke-admin"])
    assert partnered.refresh().status == S.ACTIVE


def test_each_lapse_step_is_told_to_the_owners_and_the_tenant_admins(partnered, staff):
    recertification, _ = _open(partnered)
    recert.sweep(recertification.due_at)
    recert.sweep(recertification.due_at + 14 * DAY)
    told = Notification.objects.filter(event=NotificationEvent.RECERTIFICATION_LAPSED)
    assert sorted(told.values_list("recipient", flat=True)) == sorted(
        ["ke-health-owner@scp.example", "ke-admin@scp.example"] * 2)
    assert {n.subject.rsplit(", ", 1)[-1] for n in told} == {"integration restricted", "suspended"}


def test_a_vertical_without_an_owner_is_told_to_those_who_can_assign_one(partnered, staff):
    RoleAssignment.objects.filter(user=staff["ke-health-owner"]).delete()
    _open(partnered)
    told = Notification.objects.filter(event=NotificationEvent.RECERTIFICATION_DUE)
    assert sorted(told.values_list("recipient", flat=True)) == ["ke-admin@scp.example", "umbrella@scp.example"]


def test_whoever_requested_the_integration_cannot_recertify_it_even_as_an_owner(partnered, staff, demo):
    requester = get_user_model().objects.get(username="ke-admin")  # created and submitted it
    RoleAssignment.objects.create(user=requester, role=Role.VERTICAL_OWNER, tenant=demo["ke"], vertical=demo["health"])
    recertification, _ = _open(partnered)
    with pytest.raises(PermissionDeniedError, match="requested"):
        recert.recertification_answer(recertification=recertification, actor=requester, decision="confirm")

