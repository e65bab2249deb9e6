"""One service per lifecycle action (spec §6). The admin, the governance API and commands
all call these; each checks who may act, applies the model's transition, saves, and writes
the audit record in the same transaction. Keycloak is only called outside transactions.
"""
import ipaddress
import logging

from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from audit.services import AuditEvent, audit_record
from registry.credentials import new_api_key
from registry.models import Integration, ReviewDecision, VerticalReview
from scp_core.errors import InvalidTransitionError, UpstreamUnavailableError, ValidationFailedError
from scp_core.models import Purpose

from . import credentials, keycloak, notifications
from .agreement_gate import agreement_end, require_approved_agreement, require_current_agreement
from .models import Recertification, RecertificationStatus
from .permissions import require
from .signals import integration_status_changed

logger = logging.getLogger(__name__)

# States in which the integration's Keycloak client may issue tokens.


def integration_create(
    *,
    actor,
    tenant,
    partner,
    integration_name,
    verticals,
    data_contract=None,
    template=None,
    purpose="",
    purpose_code="",
    active_from=None,
    active_until=None,
    rate_limit_policy=None,
    other_tenants=(),
    request_id="",
):
    """Create a Draft integration, from a vetted registry template or from scratch. Its
    purpose is one of the tenant's (`purpose_code`; a template proposes one)."""
    require(actor, "create", tenant=tenant, partner=partner)
    if not integration_name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in integration_name):
        # It appears in e-mail subjects, file names and headers: one printable line.
        raise ValidationFailedError("The integration's name must be one line of printable text.",
                                    errors=[{"field": "integration_name", "message": "empty, or holds a control character"}])
    purpose_code = purpose_code or (template.purpose_code if template is not None else "")
    if not Purpose.objects.filter(tenant=tenant, code=purpose_code).exists():
        known = ", ".join(Purpose.objects.filter(tenant=tenant).values_list("code", flat=True)) or "none"
        raise ValidationFailedError(
            "An integration declares one of its tenant's purposes.",
            errors=[{"field": "purpose_code", "message": f"{purpose_code or 'missing'}: not one of {tenant.code}'s ({known})"}],
        )
    if template is not None:
        if not template.is_vetted:
            raise ValidationFailedError(f"Template {template} is not vetted by the umbrella authority yet.")
        outside = sorted({v.code for v in verticals} - {v.code for v in template.verticals.all()})
        if outside:
            raise ValidationFailedError(
                "Every declared vertical must be one of the template's.",
                errors=[{"field": "verticals", "message": f"not in template {template}: {code}"} for code in outside],
            )
        data_contract = template.data_contract
        purpose = purpose or template.purpose
    if data_contract is None:
        raise ValidationFailedError("An integration needs a data contract version or a template.")
    readable = data_contract.readable_verticals() | set(data_contract.write_schemas)
    undeclared = sorted(v.code for v in verticals if v.code not in readable)
    if not verticals or undeclared:
        raise ValidationFailedError(
            "Every declared vertical must be covered by the data contract.",
            errors=[{"field": "verticals", "message": f"not in {data_contract.ref}: {code}"} for code in undeclared]
            or [{"field": "verticals", "message": "at least one vertical is required"}],
        )
    extra = {}
    if active_from is not None:
        extra["active_from"] = active_from
    with transaction.atomic():
        integration = Integration(
            tenant=tenant,
            partner=partner,
            integration_name=integration_name,
            template=template,
            data_contract=data_contract,
            purpose=purpose,
            purpose_code=purpose_code,
            active_until=active_until,
            rate_limit_policy=rate_limit_policy,
            created_by=actor,
            **extra,
        )
        integration._history_user = actor
        integration.save()
        integration.verticals.set(verticals)
        integration.other_tenants.set([t for t in other_tenants if t.pk != tenant.pk])
        audit_record(
            event_type=AuditEvent.INTEGRATION_CREATED,
            tenant=tenant,
            integration=integration,
            actor_user=actor,
            request_id=request_id,
            verticals=[v.code for v in verticals],
            details={"status": integration.status, "data_contract": data_contract.ref, "purpose_code": purpose_code},
        )
    return integration


def history_reason(text):
    """The reason as the integration's history keeps it: its column holds 100 characters, so a
    longer reason is cut there (the audit record of the change keeps it whole)."""
    text = " ".join(str(text).split())
    return text if len(text) <= 100 else text[:99] + "…"


def _transition(integration, *, actor, action, reason="", request_id="", details=None, **kwargs):
    """Apply one transition under a row lock, save it and audit it, all in one transaction."""
    with transaction.atomic():
        locked = Integration.objects.select_for_update().get(pk=integration.pk)
        method = getattr(locked, action)
        if not can_proceed(method):
            raise InvalidTransitionError(f"Action '{action}' is not possible from state '{locked.status}'.")
        before = locked.status
        method(**kwargs)
        locked._change_reason = history_reason(reason or action)
        locked._history_user = actor  # the history names the actor outside web requests too
        locked.save()
        audit_record(
            event_type=AuditEvent.INTEGRATION_TRANSITION,
            tenant=locked.tenant,
            integration=locked,
            actor_user=actor,
            actor="" if actor else "system",
            request_id=request_id,
            verticals=locked.vertical_codes(),
            details={"action": action, "before": before, "after": locked.status, "reason": reason, **(details or {})},
        )
        integration_status_changed.send(sender=Integration, integration=locked, before=before, after=locked.status)
        notifications.integration_transitioned(locked, action, f"{action}:{timezone.now().isoformat()}", reason)
    return locked


def _check_can(integration, action):
    if not can_proceed(getattr(integration, action)):
        raise InvalidTransitionError(f"Action '{action}' is not possible from state '{integration.status}'.")


def integration_submit(*, integration, actor, request_id=""):
    _check_can(integration, "submit")
    require(actor, "submit", integration)
    return _transition(integration, actor=actor, action="submit", request_id=request_id, by=actor)


def integration_review(*, integration, actor, vertical, decision, reason="", approved_fields=(), request_id=""):
    """Record one vertical owner's decision. Requested becomes Reviewed once every declared
    vertical is approved; any rejection ends the request in Rejected with the reason.
    A reviewer may narrow the readable fields to `approved_fields` (never widen them)."""
    _check_can(integration, "review")
    if vertical not in integration.verticals.all():
        raise ValidationFailedError(f"'{vertical.code}' is not a declared vertical of this integration.")
    require(actor, "review", integration, vertical=vertical)
    if decision == ReviewDecision.REJECT and not reason:
        raise ValidationFailedError("A rejection needs a reason.", errors=[{"field": "reason", "message": "required"}])
    allowed = integration.data_contract.approvable_fields(vertical.code)
    unknown = sorted(set(approved_fields) - allowed)
    if unknown:
        raise ValidationFailedError(
            "Approved fields must come from the data contract.",
            errors=[{"field": "approved_fields", "message": f"not in {integration.data_contract_ref}: {f}"} for f in unknown],
        )
    with transaction.atomic():
        VerticalReview.objects.update_or_create(
            integration=integration,
            vertical=vertical,
            defaults={"decision": decision, "reason": reason, "reviewer": actor, "approved_fields": sorted(approved_fields)},
        )
        audit_record(
            event_type=AuditEvent.VERTICAL_REVIEW,
            tenant=integration.tenant,
            integration=integration,
            actor_user=actor,
            request_id=request_id,
            verticals=[vertical.code],
            details={"decision": decision, "reason": reason, "approved_fields": sorted(approved_fields)},
        )
        if decision == ReviewDecision.REJECT:
            return _transition(integration, actor=actor, action="reject", reason=reason, request_id=request_id)
        approved = set(
            integration.vertical_reviews.filter(decision=ReviewDecision.APPROVE).values_list("vertical_id", flat=True)
        )
        if approved >= set(integration.verticals.values_list("id", flat=True)):
            return _transition(integration, actor=actor, action="review", request_id=request_id)
    integration.refresh_from_db()
    return integration


def integration_approve(*, integration, actor, cross_tenant_grant=False, reason="", request_id=""):
    """The umbrella authority's sign-off; a cross-tenant integration needs an explicit grant."""
    _check_can(integration, "approve")
    require(actor, "approve", integration)
    cross_tenant = integration.other_tenants.exists()
    if cross_tenant and not cross_tenant_grant:
        raise ValidationFailedError(
            "This integration reaches other tenants: approving it needs an explicit cross-tenant grant.",
            errors=[{"field": "cross_tenant_grant", "message": "required for a cross-tenant integration"}],
        )
    # No sign-off without a current data-sharing agreement; the one checked is the one approved,
    # recorded on the integration and in the audit (a later upload waits for acceptance).
    agreement = require_current_agreement(integration)
    return _transition(
        integration,
        actor=actor,
        action="approve",
        reason=reason,
        request_id=request_id,
        cross_tenant_granted_by=actor if cross_tenant else None,
        agreement=agreement,
        agreement_until=agreement_end(agreement.expires_on),
        details={"cross_tenant_grant": cross_tenant, "agreement_id": agreement.pk, "agreement_sha256": agreement.sha256},
    )


def integration_reject(*, integration, actor, reason, request_id=""):
    _check_can(integration, "reject")
    require(actor, "reject", integration)
    if not reason:
        raise ValidationFailedError("A rejection needs a reason.", errors=[{"field": "reason", "message": "required"}])
    return _transition(integration, actor=actor, action="reject", reason=reason, request_id=request_id)


def integration_activate(*, integration, actor, request_id=""):
    """Issue the integration's Keycloak machine client and make it Active.

    Returns (integration, credentials); the secret is in the return value only and is
    never stored. Keycloak is provisioned first, outside the transaction, because the
    secret must be handed back by this call: if Keycloak is down nothing changes in the
    database and the call can simply be repeated (provisioning is idempotent by clientId).
    If the state change then fails, the client is disabled again; even if that too fails,
    the exchange refuses its tokens, since it checks the integration's state per request.
    """
    _check_can(integration, "activate")
    require(actor, "activate", integration)
    require_approved_agreement(integration)  # the approved agreement may have lapsed since the sign-off
    client_id = integration.client_id_for_keycloak
    try:
        kc_uuid = keycloak.ensure_client(
            client_id=client_id,
            tenant_code=integration.tenant.code,
            integration_id=integration.integration_id,
            verticals=integration.vertical_codes(),
        )
        secret = keycloak.regenerate_secret(kc_uuid)
    except keycloak.KeycloakUnavailable as exc:
        raise UpstreamUnavailableError(f"Keycloak is unavailable; activation can be retried. ({exc})") from exc
    try:
        with transaction.atomic():
            integration = _transition(
                integration,
                actor=actor,
                action="activate",
                request_id=request_id,
                auth_client_id=client_id,
                details={"auth_client_id": client_id},
            )
            _audit_secret_issued(integration, actor, request_id, "activate")
            credentials.client_secret_issued(integration=integration, actor=actor, request_id=request_id)
    except Exception:
        _sync_client_quietly(integration.pk)
        raise
    return integration, {"client_id": client_id, "client_secret": secret}


# Rotation keeps the previous secret for a grace period the rotator chooses (issue #14 item 5).
integration_rotate_secret = credentials.integration_rotate_secret


def _audit_secret_issued(integration, actor, request_id, action):
    audit_record(
        event_type=AuditEvent.CLIENT_SECRET_ISSUED,
        tenant=integration.tenant,
        integration=integration,
        actor_user=actor,
        client_id=integration.auth_client_id,
        request_id=request_id,
        verticals=integration.vertical_codes(),
        details={"action": action},
    )


def _state_change_with_client_sync(integration, *, actor, action, reason="", request_id="", **kwargs):
    _check_can(integration, action)
    if actor is not None:  # None: the system's own scheduled jobs
        require(actor, action, integration)
    integration = _transition(integration, actor=actor, action=action, reason=reason, request_id=request_id, **kwargs)
    pk = integration.pk
    transaction.on_commit(lambda: _sync_client_quietly(pk))
    return integration


def integration_restrict(*, integration, actor, reason="", request_id=""):
    return _state_change_with_client_sync(integration, actor=actor, action="restrict", reason=reason, request_id=request_id)


def integration_suspend(*, integration, actor, reason="", request_id=""):
    return _state_change_with_client_sync(integration, actor=actor, action="suspend", reason=reason, request_id=request_id)


def integration_reinstate(*, integration, actor, reason="", request_id=""):
    refused = _recertification_refusal(integration)
    if refused:
        raise InvalidTransitionError(refused)
    return _state_change_with_client_sync(integration, actor=actor, action="reinstate", reason=reason, request_id=request_id)


def _recertification_refusal(integration):
    """Why a reinstatement must wait for a vertical's owner: the newest recertification of a
    vertical was revoked (final: the owner withdrew the access) or lapsed unanswered (until the
    owner answers it late). None when nothing stands in the way."""
    newest = {}
    for r in Recertification.objects.filter(integration=integration).select_related("vertical").order_by("opened_at", "pk"):
        newest[r.vertical_id] = r
    for r in newest.values():
        if r.status == RecertificationStatus.REVOKED:
            return f"The owner of {r.vertical.code} revoked this integration's access at recertification; it cannot be reinstated."
        if r.status == RecertificationStatus.LAPSED:
            return (f"The recertification of {r.vertical.code} lapsed unanswered; its owner must answer it "
                    "before the integration can be reinstated.")
    return None


def integration_deprecate(*, integration, actor, replacement, reason="", request_id=""):
    if replacement.pk == integration.pk or replacement.tenant_id != integration.tenant_id:
        raise ValidationFailedError("The replacement must be another integration of the same tenant.")
    return _state_change_with_client_sync(
        integration, actor=actor, action="deprecate", reason=reason, request_id=request_id, replacement=replacement
    )


def integration_archive(*, integration, actor, reason="", request_id=""):
    return _state_change_with_client_sync(integration, actor=actor, action="archive", reason=reason, request_id=request_id)


def integration_expire(*, integration, now=None):
    """Move an integration past its `active_until` out of service (the scheduled job's action)."""
    now = now or timezone.now()
    if integration.active_until is None or integration.active_until > now:
        return integration
    return _state_change_with_client_sync(
        integration, actor=None, action="suspend", reason=f"active_until {integration.active_until.isoformat()} passed"
    )


def integration_sync_client(integration_id):
    """Make the Keycloak client's enabled flag follow the integration's state (idempotent)."""
    integration = Integration.objects.get(pk=integration_id)
    client_id = integration.auth_client_id or integration.client_id_for_keycloak
    keycloak.set_enabled(client_id, integration.is_serving)


def _sync_client_quietly(integration_id):
    """After commit: sync at once; if Keycloak is unreachable, leave it to the retrying task.
    Access is safe meanwhile: the exchange checks the integration's state on every request."""
    try:
        integration_sync_client(integration_id)
    except (keycloak.KeycloakUnavailable, keycloak.KeycloakError):
        logger.warning("Keycloak client sync of %s deferred to the retry task", integration_id)
        from .tasks import sync_keycloak_client_task

        sync_keycloak_client_task.delay(str(integration_id))


def integration_configure_controls(
    *, integration, actor, ip_allowlist=None, high_risk=None, client_cert_sha256=None, rate_limit_policy=None,
    issue_api_key=False, request_id="",
):
    """Set the layered controls of spec §7.2. Returns (integration, api_key or None); a new
    API key is returned once and only its hash is stored."""
    require(actor, "configure", integration)
    changes, api_key = {}, None
    if ip_allowlist is not None:
        changes["ip_allowlist"] = _valid_cidrs(ip_allowlist)
    if high_risk is not None:
        changes["high_risk"] = bool(high_risk)
    if client_cert_sha256 is not None:
        changes["client_cert_sha256"] = client_cert_sha256.lower().replace(":", "")
    if rate_limit_policy is not None:
        changes["rate_limit_policy"] = rate_limit_policy
    if issue_api_key:
        api_key, changes["api_key_prefix"], changes["api_key_hash"] = new_api_key()
    with transaction.atomic():
        locked = Integration.objects.select_for_update().get(pk=integration.pk)
        before = {name: str(getattr(locked, name)) for name in changes if name != "api_key_hash"}
        for name, value in changes.items():
            setattr(locked, name, value)
        locked._change_reason = "controls configured"
        locked._history_user = actor
        locked.save()
        if issue_api_key:
            credentials.api_key_issued(integration=locked, actor=actor, prefix=changes["api_key_prefix"],
                                       key_hash=changes["api_key_hash"], request_id=request_id)
        audit_record(
            event_type=AuditEvent.INTEGRATION_CONTROLS,
            tenant=locked.tenant,
            integration=locked,
            actor_user=actor,
            request_id=request_id,
            verticals=locked.vertical_codes(),
            details={"before": before, "after": {n: str(getattr(locked, n)) for n in before}, "api_key_issued": issue_api_key},
        )
    return locked, api_key


def _valid_cidrs(values):
    try:
        return [str(ipaddress.ip_network(v, strict=False)) for v in values]
    except ValueError as exc:
        raise ValidationFailedError("The IP allowlist must hold CIDRs.", errors=[{"field": "ip_allowlist", "message": str(exc)}]) from exc
