"""Recertification campaigns (issue #14 item 3): approval is not forever.

Every serving integration is re-approved, vertical by vertical, by the owners of its verticals
every `tenant.recertification_interval_days` after their last approval (the review, or the
last recertification that kept it). The owner sees its scope, purpose, last use and volume
since then, and confirms, narrows the fields or revokes. Unanswered by `due_at`, the
integration is restricted to reads; unanswered as long again, it is suspended. Each step is
recorded with its reason (audit, integration history) and the owners are told by e-mail.
"""
import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django_fsm import can_proceed

from audit.models import AuditEvent, AuditRecord, AuditResult, Disclosure
from audit.services import audit_record
from registry.models import Integration, IntegrationStatus, VerticalReview
from scp_core.errors import InvalidTransitionError, ValidationFailedError

from . import services
from .models import NotificationEvent, Recertification, RecertificationStatus
from .notifications import notify, tenant_admins, umbrella_authority, vertical_owners
from .permissions import require

S = IntegrationStatus
R = RecertificationStatus
DECISIONS = ("confirm", "narrow", "revoke")
_OUTCOME = {"confirm": R.CONFIRMED, "narrow": R.NARROWED, "revoke": R.REVOKED}


def usage(integration, vertical_code, since):
    """What the owner weighs: last use, requests and releases of persons' data since `since`."""
    requests = AuditRecord.objects.filter(
        event_type=AuditEvent.API_REQUEST, integration=integration, occurred_at__gte=since, result=AuditResult.SUCCESS,
    )
    releases = Disclosure.objects.filter(integration=integration, vertical=vertical_code, disclosed_at__gte=since)
    last = requests.aggregate(last=Max("occurred_at"))["last"]
    return {
        "since": since.isoformat(),
        "last_use": last.isoformat() if last else None,
        "requests": requests.count(),
        "releases": releases.count(),
    }


def scope_of(integration, vertical_code):
    """The fields it reads in this vertical (with their masks) and its readable record fields."""
    records = integration.record_scope.get(vertical_code, {})
    return {
        "fields": dict(integration.read_scope.get(vertical_code, {})),
        "record_fields": {f"{t}.{f}": m for t, rule in records.items() for f, m in rule.get("fields", {}).items()},
    }


def last_approval(integration, vertical):
    """When the owner of `vertical` last approved this integration's access."""
    kept = Recertification.objects.filter(
        integration=integration, vertical=vertical, status__in=[R.CONFIRMED, R.NARROWED],
    ).aggregate(at=Max("answered_at"))["at"]
    reviewed = VerticalReview.objects.filter(integration=integration, vertical=vertical).aggregate(at=Max("decided_at"))["at"]
    return max([at for at in (kept, reviewed) if at is not None], default=integration.active_from)


def sweep(now):
    """Open the recertifications now due, and restrict then suspend what was left unanswered."""
    return {"opened": _open_due(now), "lapsed": _lapse_overdue(now)}


def _open_due(now):
    opened = 0
    serving = Integration.objects.serving().filter(tenant__recertification_interval_days__isnull=False)
    for integration in serving.select_related("tenant", "partner").prefetch_related("verticals"):
        interval = datetime.timedelta(days=integration.tenant.recertification_interval_days)
        open_for = set(integration.recertifications.filter(status=R.OPEN).values_list("vertical_id", flat=True))
        for vertical in integration.verticals.all():
            if vertical.pk in open_for:
                continue
            since = last_approval(integration, vertical)
            if since + interval <= now:
                recertification_open(integration=integration, vertical=vertical, since=since, now=now)
                opened += 1
    return opened


def recertification_open(*, integration, vertical, since, now):
    """Open one recertification (the system's action), with what the owner will be shown."""
    answer_days = datetime.timedelta(days=integration.tenant.recertification_answer_days)
    snapshot = {
        "purpose_code": integration.purpose_code,
        "status": integration.status,
        **scope_of(integration, vertical.code),
        **usage(integration, vertical.code, since),
    }
    with transaction.atomic():
        recertification = Recertification.objects.create(
            integration=integration, vertical=vertical, opened_at=now, due_at=now + answer_days, snapshot=snapshot,
        )
        audit_record(
            event_type=AuditEvent.RECERTIFICATION_OPENED, tenant=integration.tenant, integration=integration,
            actor="system", verticals=[vertical.code],
            details={"recertification": recertification.pk, "due_at": recertification.due_at.isoformat(),
                     "last_approval": since.isoformat()},
        )
        notify(
            NotificationEvent.RECERTIFICATION_DUE, integration=integration, key=f"{recertification.pk}",
            recipients=_answerers_or_their_stand_ins(integration, vertical),
            detail=(f"Please confirm, narrow or revoke its access to {vertical.code} by "
                    f"{recertification.due_at:%Y-%m-%d}. Unanswered, it is restricted to reads, then suspended."),
        )
    return recertification


def _lapse_overdue(now):
    lapsed = 0
    overdue = Recertification.objects.filter(status=R.OPEN, due_at__lte=now).select_related(
        "integration__tenant", "vertical")
    for recertification in overdue:
        answer_days = datetime.timedelta(days=recertification.integration.tenant.recertification_answer_days)
        if not recertification.lapse_stage:
            lapsed += _lapse(recertification, first=True)
        elif recertification.due_at + answer_days <= now:
            lapsed += _lapse(recertification, first=False)
    return lapsed


def _lapse(recertification, *, first):
    """One step of a lapse: first restrict the integration (when it is Active; otherwise the
    lapse is only noted, "overdue"), then suspend it; each step recorded with its reason and
    told to the owners and the tenant's admins."""
    reason = (f"recertification of {recertification.vertical.code} unanswered since "
              f"{recertification.due_at:%Y-%m-%d %H:%M} UTC")
    action = "restrict" if first else "suspend"
    with transaction.atomic():
        locked = Recertification.objects.select_for_update().get(pk=recertification.pk)
        if locked.status != R.OPEN or bool(locked.lapse_stage) != (not first):
            return 0  # answered meanwhile, or this step was taken by another sweep
        integration = Integration.objects.get(pk=locked.integration_id)
        acted = can_proceed(getattr(integration, action))
        if acted:
            service = services.integration_restrict if first else services.integration_suspend
            integration = service(integration=integration, actor=None, reason=reason)
        # "restricted" only when this lapse restricted it: a late confirmation then lifts exactly
        # that restriction, never one an administrator imposed.
        stage = ("restricted" if acted else "overdue") if first else "suspended"
        locked.lapse_stage = stage
        if not first:
            locked.status = R.LAPSED
        locked.save(update_fields=["lapse_stage", "status"])
        audit_record(
            event_type=AuditEvent.RECERTIFICATION_LAPSED, tenant=integration.tenant, integration=integration,
            actor="system", verticals=[locked.vertical.code],
            details={"recertification": locked.pk, "stage": stage, "reason": reason,
                     "integration_action": action if acted else None, "status": integration.status},
        )
        notify(
            NotificationEvent.RECERTIFICATION_LAPSED, integration=integration, key=f"{locked.pk}:{stage}",
            recipients=_answerers_or_their_stand_ins(integration, locked.vertical) + tenant_admins(integration.tenant_id),
            detail=f"{reason}: the integration is now {integration.get_status_display()}."
                   + (" A late answer by the vertical's owner lifts the lapse." if first else
                      " Once the vertical's owner answers, the tenant's admin may reinstate it."),
            stage="integration restricted" if stage == "restricted" else stage,
        )
    return 1


def _answerers_or_their_stand_ins(integration, vertical):
    """The vertical's owners; where it has none, those who can assign one (the tenant's admins
    ask ROOT) and the umbrella authority, so that a recertification never lapses untold."""
    owners = vertical_owners(integration, [vertical.code])
    return owners or tenant_admins(integration.tenant_id) + umbrella_authority()


def recertification_answer(*, recertification, actor, decision, reason="", approved_fields=(), request_id=""):
    """The vertical owner's answer: confirm, narrow the readable fields to `approved_fields`
    (never widen them), or revoke (the integration is suspended, and stays so: reinstating it is
    refused). An open recertification, or one that lapsed, may be answered; a confirmation or
    narrowing lifts the restriction its own lapse imposed, and unblocks a reinstatement."""
    integration = recertification.integration
    vertical = recertification.vertical
    require(actor, "recertify", integration, vertical=vertical)
    if decision not in DECISIONS:
        raise ValidationFailedError("The decision must be confirm, narrow or revoke.",
                                    errors=[{"field": "decision", "message": f"not one of {', '.join(DECISIONS)}"}])
    if decision == "revoke" and not reason:
        raise ValidationFailedError("A revocation needs a reason.", errors=[{"field": "reason", "message": "required"}])
    narrowed = sorted(set(approved_fields))
    if decision == "narrow":
        _check_narrowing(integration, vertical.code, narrowed)
    with transaction.atomic():
        locked = Recertification.objects.select_for_update().get(pk=recertification.pk)
        if locked.status not in (R.OPEN, R.LAPSED):
            raise InvalidTransitionError(f"This recertification is already {locked.get_status_display()}.")
        locked.status = _OUTCOME[decision]
        locked.answered_by = actor
        locked.answered_at = timezone.now()
        locked.reason = reason
        locked.approved_fields = narrowed if decision == "narrow" else []
        locked.save()
        audit_record(
            event_type=AuditEvent.RECERTIFICATION_ANSWERED, tenant=integration.tenant, integration=integration,
            actor_user=actor, request_id=request_id, verticals=[vertical.code],
            details={"recertification": locked.pk, "decision": decision, "reason": reason,
                     "approved_fields": locked.approved_fields, "after_lapse": locked.lapse_stage or None},
        )
        if decision == "narrow":
            _narrow(integration, vertical, narrowed, actor, reason)
        current = Integration.objects.get(pk=integration.pk)
        if decision == "revoke":
            if can_proceed(current.suspend):
                services.integration_suspend(
                    integration=current, actor=None, request_id=request_id,
                    reason=f"access revoked at recertification by the owner of {vertical.code}: {reason}")
        elif _restricted_by(current, locked) and not _still_lapsed(current):
            services.integration_reinstate(
                integration=current, actor=None, request_id=request_id,
                reason=f"recertified by the owner of {vertical.code} after the lapse")
    locked.refresh_from_db()
    return locked


def _restricted_by(integration, recertification):
    """Whether the integration is Restricted by this recertification's lapse and nothing has
    changed its state since (its newest history entry is that restriction)."""
    if recertification.lapse_stage != "restricted" or integration.status != S.RESTRICTED:
        return False
    latest = integration.history.order_by("-history_date", "-history_id").first()
    return latest is not None and latest.history_change_reason == services.history_reason(
        f"recertification of {recertification.vertical.code} unanswered since "
        f"{recertification.due_at:%Y-%m-%d %H:%M} UTC")


def _still_lapsed(integration):
    return integration.recertifications.filter(status=R.OPEN, lapse_stage__in=["restricted", "overdue"]).exists()


def _check_narrowing(integration, vertical_code, narrowed):
    scope = scope_of(integration, vertical_code)
    current = set(scope["fields"]) | set(scope["record_fields"])
    unknown = sorted(set(narrowed) - current)
    if not narrowed or unknown or set(narrowed) == current:
        message = (f"not in its current scope: {', '.join(unknown)}" if unknown
                   else "choose fewer fields than it reads now" if narrowed else "choose at least one field")
        raise ValidationFailedError("Narrowing keeps a strict, non-empty subset of the fields it reads now.",
                                    errors=[{"field": "approved_fields", "message": message}])


def _narrow(integration, vertical, narrowed, actor, reason):
    """Narrow the vertical's approved fields and the scope the exchange reads, at once."""
    VerticalReview.objects.filter(integration=integration, vertical=vertical).update(approved_fields=narrowed)
    locked = Integration.objects.select_for_update().get(pk=integration.pk)
    locked.read_scope = locked.effective_read_fields()
    locked.record_scope = locked.effective_record_read()
    locked._change_reason = services.history_reason(f"narrowed at recertification of {vertical.code}: {reason}".strip(": "))
    locked._history_user = actor
    locked.save(update_fields=["read_scope", "record_scope"])
