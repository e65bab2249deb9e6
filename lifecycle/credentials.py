"""Credentials without downtime (issue #14 item 5): the register of every credential issued to
an integration (its Keycloak client secret, its API key), rotation with a grace period in which
the previous one keeps working, early revocation, last use, and the sweep that ends graces and
tells the owners of credentials past their maximum age.

Client secrets live in Keycloak: the realm's client policy (`secret-rotation` executor,
keycloak/realm-scp.json) keeps the previous secret after a rotation, and `keycloak.rotate_secret`
sets its end to the grace the rotator chose, so Keycloak itself refuses it from then on; the
sweep deletes it and records the revocation. Keycloak keeps only one previous secret, so a
second rotation while one is in grace is refused. API keys are checked by the exchange: the
current key's hash on the Integration row is the fast path, the register only on a mismatch.
"""
import datetime
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import AuditEvent, audit_record
from registry.credentials import new_api_key
from registry.models import Credential, CredentialKind, Integration
from scp_core.errors import ApiError, InvalidTransitionError, UpstreamUnavailableError, ValidationFailedError

from . import keycloak
from .models import NotificationEvent
from .notifications import notify, partner_contacts, tenant_admins
from .permissions import require

logger = logging.getLogger(__name__)

K = CredentialKind
DEFAULT_GRACE_SECONDS = 24 * 3600
GRACE_CHOICES = [
    (0, "none: the old one stops at once"),
    (3600, "1 hour"),
    (24 * 3600, "24 hours"),
    (3 * 24 * 3600, "3 days"),
    (7 * 24 * 3600, "7 days (the most)"),
]
# Last use is written at most once a minute per credential (and per process): never a write per request.
LAST_USE_RESOLUTION = datetime.timedelta(minutes=1)
_last_use_written = {}


class State:
    CURRENT = "current"
    IN_GRACE = "in_grace"
    GRACE_ENDED = "grace_ended"  # refused already; the sweep records the revocation
    REVOKED = "revoked"


def max_age():
    return datetime.timedelta(days=settings.SCP_CREDENTIAL_MAX_AGE_DAYS)


def state_of(credential, now=None):
    now = now or timezone.now()
    if credential.revoked_at is not None:
        return State.REVOKED
    if credential.expires_at is None:
        return State.CURRENT
    return State.IN_GRACE if credential.expires_at > now else State.GRACE_ENDED


def is_aged(credential, now=None):
    """A current credential older than SCP_CREDENTIAL_MAX_AGE_DAYS: flagged, its owners told."""
    now = now or timezone.now()
    return state_of(credential, now) == State.CURRENT and credential.issued_at <= now - max_age()


# --- reads -----------------------------------------------------------------------------------


def for_integration(integration, now=None):
    """The integration's register, newest first, each credential with its state and flags
    (shown to whoever may see the integration: no secret, no hash, an API key's prefix only)."""
    now = now or timezone.now()
    rows = Credential.objects.filter(integration=integration).select_related("issued_by").order_by("kind", "-issued_at", "-pk")
    return [{
        "credential": c, "id": c.pk, "kind": c.kind, "kind_display": c.get_kind_display(), "prefix": c.prefix,
        "issued_at": c.issued_at, "issued_by": c.issued_by.get_username() if c.issued_by else "",
        "last_used_at": c.last_used_at, "last_use_meaning": _last_use_meaning(c.kind),
        "expires_at": c.expires_at, "revoked_at": c.revoked_at, "revoked_reason": c.revoked_reason,
        "state": state_of(c, now), "aged": is_aged(c, now),
    } for c in rows]


def _last_use_meaning(kind):
    if kind == K.API_KEY:
        return "last request the exchange accepted with this key"
    # Keycloak does not say which of a client's secrets obtained a token, and the exchange only
    # sees the token: this is the last token of the client seen while this secret was current.
    return "last exchange request with a token of this client (Keycloak does not tell which secret obtained it)"


def aged(integrations, now=None):
    """Current credentials of these integrations past their maximum age (for the compliance view)."""
    now = now or timezone.now()
    return Credential.objects.filter(
        integration__in=integrations, revoked_at__isnull=True, expires_at__isnull=True, issued_at__lte=now - max_age(),
    ).select_related("integration__tenant")


def in_grace(integration, kind, now=None):
    return Credential.objects.usable(now).filter(integration=integration, kind=kind, expires_at__isnull=False)


def has_previous(integration):
    """Whether a previous credential awaits its revocation (in grace, or its grace over)."""
    return Credential.objects.filter(integration=integration, revoked_at__isnull=True, expires_at__isnull=False).exists()


# --- the register, written by the services that issue credentials -----------------------------


def client_secret_issued(*, integration, actor, request_id=""):
    """Record a client secret issued at activation (in the caller's transaction); any earlier
    one is gone (Keycloak replaced it at once)."""
    _supersede(integration, K.CLIENT_SECRET, actor=actor, reason="replaced at activation", request_id=request_id)
    return Credential.objects.create(integration=integration, kind=K.CLIENT_SECRET, issued_by=actor)


def api_key_issued(*, integration, actor, prefix, key_hash, request_id=""):
    """Record an API key issued with the layered controls (in the caller's transaction). That
    replaces every earlier key at once, those in a grace period included: it is the reset."""
    _supersede(integration, K.API_KEY, actor=actor, reason="replaced by a new key issued with the controls",
               request_id=request_id)
    return Credential.objects.create(integration=integration, kind=K.API_KEY, prefix=prefix, key_hash=key_hash,
                                     issued_by=actor)


def _supersede(integration, kind, *, actor, reason, request_id):
    now = timezone.now()
    for credential in Credential.objects.filter(integration=integration, kind=kind, revoked_at__isnull=True):
        Credential.objects.filter(pk=credential.pk).update(revoked_at=now, revoked_reason=reason)
        _audit(AuditEvent.CREDENTIAL_REVOKED, integration, actor, request_id,
               {"kind": kind, "credential": credential.pk, "reason": reason})


def _audit(event, integration, actor, request_id, details):
    audit_record(
        event_type=event, tenant=integration.tenant, integration=integration, actor_user=actor,
        actor="" if actor else "system", client_id=integration.auth_client_id, request_id=request_id,
        verticals=integration.vertical_codes(), details=details,
    )


def _current(integration, kind, *, issued_at=None):
    """The current credential of this kind, registered now if it predates the register
    (integrations activated before it existed keep working and can be rotated)."""
    current = Credential.objects.filter(integration=integration, kind=kind, revoked_at__isnull=True,
                                        expires_at__isnull=True).order_by("-issued_at").first()
    if current is not None:
        return current
    fields = {"integration": integration, "kind": kind, "issued_at": issued_at or timezone.now()}
    if kind == K.API_KEY:
        fields.update(prefix=integration.api_key_prefix, key_hash=integration.api_key_hash,
                      issued_at=issued_at or _api_key_set_at(integration))
    return Credential.objects.create(**fields)


def _api_key_set_at(integration):
    # The integration's history says when its current key hash was set.
    first = integration.history.filter(api_key_hash=integration.api_key_hash).order_by("history_date").first()
    return first.history_date if first is not None else timezone.now()


def _secret_created_at(client):
    seconds = keycloak.secret_created_at(client) if client else None
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc) if seconds else None


# --- the services -----------------------------------------------------------------------------


def _grace(grace_seconds):
    if grace_seconds is None:
        return DEFAULT_GRACE_SECONDS
    limit = settings.SCP_CREDENTIAL_MAX_GRACE_SECONDS
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int) or not 0 <= grace_seconds <= limit:
        raise ValidationFailedError(
            f"The grace period is a whole number of seconds from 0 to {limit} (7 days).",
            errors=[{"field": "grace_seconds", "message": f"must be an integer from 0 to {limit}"}],
        )
    return grace_seconds


def _check_serving(integration, what):
    if not integration.is_serving:
        raise InvalidTransitionError(f"An integration in state '{integration.status}' has no {what} to rotate.")


def integration_rotate_secret(*, integration, actor, grace_seconds=None, request_id=""):
    """Issue a new Keycloak client secret; the previous one keeps working for `grace_seconds`
    (0 to 7 days; default 24 h), then is revoked. Returns (integration, credentials) with the
    new secret, shown once.

    The previous credential is claimed first (its grace end set by a conditional UPDATE), so two
    rotations at once cannot both proceed; Keycloak is called outside any transaction, and the
    claim is undone if it fails."""
    require(actor, "rotate-secret", integration)
    grace = _grace(grace_seconds)
    integration = Integration.objects.select_related("tenant").get(pk=integration.pk)
    _check_serving(integration, "secret")
    if not integration.auth_client_id:
        raise InvalidTransitionError("The integration has no Keycloak client; activate it.")
    _end_lapsed(integration, K.CLIENT_SECRET)
    pending = in_grace(integration, K.CLIENT_SECRET).first()
    if pending is not None:
        raise InvalidTransitionError(
            f"The previous client secret is in its grace period until {pending.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Keycloak keeps only one previous secret, so rotating again now would end that grace at once: "
            "revoke it first (revoke-credential), then rotate.")
    try:
        client = keycloak.find_client(integration.auth_client_id)
    except keycloak.KeycloakUnavailable as exc:
        raise UpstreamUnavailableError(f"Keycloak is unavailable; rotation can be retried. ({exc})") from exc
    if client is None:
        raise InvalidTransitionError("The integration's Keycloak client is missing; reactivate it.")
    previous = _current(integration, K.CLIENT_SECRET, issued_at=_secret_created_at(client))
    grace_end = timezone.now() + datetime.timedelta(seconds=grace)
    if not Credential.objects.filter(pk=previous.pk, revoked_at__isnull=True, expires_at__isnull=True).update(
            expires_at=grace_end):
        raise InvalidTransitionError("Another rotation of this secret is under way; reload and try again.")
    try:
        if grace:
            secret, kept = keycloak.rotate_secret(client["id"], keep_previous_until=grace_end)
        else:
            secret, kept = keycloak.regenerate_secret(client["id"]), False
    except (keycloak.KeycloakUnavailable, keycloak.KeycloakError) as exc:
        Credential.objects.filter(pk=previous.pk, expires_at=grace_end).update(expires_at=None)  # undo the claim
        raise UpstreamUnavailableError(f"Keycloak could not rotate the secret; nothing changed. ({exc})") from exc
    now = timezone.now()
    with transaction.atomic():
        if kept is False:  # no grace asked, or Keycloak kept no previous secret: it is gone already
            reason = "rotated without grace" if not grace else "Keycloak kept no previous secret"
            Credential.objects.filter(pk=previous.pk).update(revoked_at=now, revoked_reason=reason)
        current = Credential.objects.create(integration=integration, kind=K.CLIENT_SECRET, issued_at=now, issued_by=actor)
        _audit(AuditEvent.CREDENTIAL_ROTATED, integration, actor, request_id, {
            "kind": K.CLIENT_SECRET, "credential": current.pk, "previous": previous.pk, "grace_seconds": grace,
            "previous_valid_until": grace_end.isoformat() if kept is not False else None,
            "keycloak_enforces_grace_end": kept is True,
        })
    return integration, {
        "client_id": integration.auth_client_id, "client_secret": secret,
        "previous_valid_until": grace_end if kept is not False else None,
    }


def integration_rotate_api_key(*, integration, actor, grace_seconds=None, request_id=""):
    """Issue a new API key; the previous one keeps working at the exchange for `grace_seconds`
    (0 to 7 days; default 24 h). Returns (integration, {"api_key", ...}), the key shown once.
    Several earlier keys may be in grace at once: the exchange checks the register."""
    require(actor, "rotate-api-key", integration)
    grace = _grace(grace_seconds)
    key, prefix, key_hash = new_api_key()
    with transaction.atomic():
        locked = Integration.objects.select_for_update().select_related("tenant").get(pk=integration.pk)
        _check_serving(locked, "API key")
        if not locked.api_key_hash:
            raise InvalidTransitionError("This integration has no API key to rotate; issue one with its layered controls.")
        now = timezone.now()
        previous = _current(locked, K.API_KEY)
        grace_end = now + datetime.timedelta(seconds=grace)
        if grace:
            Credential.objects.filter(pk=previous.pk).update(expires_at=grace_end)
        else:
            Credential.objects.filter(pk=previous.pk).update(revoked_at=now, revoked_reason="rotated without grace")
        locked.api_key_prefix, locked.api_key_hash = prefix, key_hash
        locked._change_reason = "API key rotated"
        locked._history_user = actor
        locked.save(update_fields=["api_key_prefix", "api_key_hash"])
        current = Credential.objects.create(integration=locked, kind=K.API_KEY, prefix=prefix, key_hash=key_hash,
                                            issued_at=now, issued_by=actor)
        _audit(AuditEvent.CREDENTIAL_ROTATED, locked, actor, request_id, {
            "kind": K.API_KEY, "credential": current.pk, "previous": previous.pk, "prefix": prefix,
            "previous_prefix": previous.prefix, "grace_seconds": grace,
            "previous_valid_until": grace_end.isoformat() if grace else None,
        })
    return locked, {"api_key": key, "api_key_prefix": prefix, "previous_valid_until": grace_end if grace else None}


def integration_revoke_credential(*, integration, actor, credential, reason="", request_id=""):
    """End a previous credential's grace period now. The current one is not revoked on its own
    (that would leave the integration without one, or an API key no longer required): rotate
    it instead, with no grace to end it at once."""
    require(actor, "revoke-credential", integration)
    credential_id = getattr(credential, "pk", credential)
    credential = Credential.objects.filter(integration=integration, pk=credential_id).first() \
        if isinstance(credential_id, int) else None
    if credential is None:
        raise ApiError(404, "not_found", "No such credential of this integration.")
    state = state_of(credential)
    if state == State.REVOKED:
        raise InvalidTransitionError("This credential is revoked already.")
    if state == State.CURRENT:
        raise InvalidTransitionError(
            "The current credential cannot be revoked on its own: rotate it (a grace of 0 ends the old one at once).")
    return _revoke(credential, actor=actor, reason=reason or "revoked before its grace ended", request_id=request_id)


def _revoke(credential, *, actor, reason, request_id="", now=None):
    """Stop a previous credential working and record it. For a client secret Keycloak's rotated
    secret is deleted first, unless it is a newer rotation's: Keycloak keeps one, which belongs
    to the newest previous secret not yet revoked."""
    integration = Integration.objects.select_related("tenant").get(pk=credential.integration_id)
    newer = Credential.objects.filter(integration=integration, kind=credential.kind, revoked_at__isnull=True,
                                      expires_at__isnull=False, issued_at__gt=credential.issued_at)
    if credential.kind == K.CLIENT_SECRET and integration.auth_client_id and not newer.exists():
        try:
            client = keycloak.find_client(integration.auth_client_id)
            if client is not None:
                keycloak.revoke_rotated_secret(client["id"])
        except (keycloak.KeycloakUnavailable, keycloak.KeycloakError) as exc:
            raise UpstreamUnavailableError(f"Keycloak could not revoke the secret; it can be retried. ({exc})") from exc
    with transaction.atomic():
        now = now or timezone.now()
        if not Credential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
                revoked_at=now, revoked_reason=reason[:200]):
            raise InvalidTransitionError("This credential is revoked already.")
        _audit(AuditEvent.CREDENTIAL_REVOKED, integration, actor, request_id, {
            "kind": credential.kind, "credential": credential.pk, "prefix": credential.prefix, "reason": reason,
            "grace_end": credential.expires_at.isoformat() if credential.expires_at else None,
        })
    credential.refresh_from_db()
    return integration


def _end_lapsed(integration, kind):
    """Record the end of graces already over but not yet swept (before a new rotation, so the
    sweep never deletes the rotated secret of the new one)."""
    lapsed = Credential.objects.filter(integration=integration, kind=kind, revoked_at__isnull=True,
                                       expires_at__lte=timezone.now())
    for credential in lapsed:
        _revoke(credential, actor=None, reason="grace period ended")


# --- the exchange: accepting previous API keys and recording last use, cheaply -------------------


def api_key_accepted(integration, key_hash):
    """True when `key_hash` is a previous API key of the integration still in its grace period
    (the exchange asks only when it is not the current key)."""
    found = Credential.objects.usable().filter(integration=integration, kind=K.API_KEY, key_hash=key_hash,
                                               expires_at__isnull=False).values_list("pk", flat=True).first()
    if found is None:
        return False
    _touch(f"pk:{found}", Q(pk=found))
    return True


def api_key_used(integration, key_hash):
    """The current API key was accepted: note its last use (at most once a minute)."""
    _touch(f"key:{key_hash}", Q(integration_id=integration.pk, kind=K.API_KEY, key_hash=key_hash,
                                       revoked_at__isnull=True))


def token_seen(integration):
    """A token of the integration's client was accepted: note it on its current client secret."""
    _touch(f"secret:{integration.pk}", Q(integration_id=integration.pk, kind=K.CLIENT_SECRET,
                                          revoked_at__isnull=True, expires_at__isnull=True))


def _touch(throttle_key, where):
    # Skipped within a minute of this process's last write; across processes the conditional
    # UPDATE writes only rows not written in the last minute.
    tick = time.monotonic()
    if tick - _last_use_written.get(throttle_key, -1e9) < LAST_USE_RESOLUTION.total_seconds():
        return
    if len(_last_use_written) > 10_000:
        _last_use_written.clear()
    _last_use_written[throttle_key] = tick
    now = timezone.now()
    Credential.objects.filter(where).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USE_RESOLUTION)).update(last_used_at=now)


# --- the sweep (the beat's governance clock) ----------------------------------------------------


def sweep(now):
    """Register credentials that predate the register, revoke previous credentials whose grace
    ended, and tell the owners of current credentials past their maximum age (once each)."""
    return {"registered": _register_unrecorded(), "revoked": _revoke_ended(now), "aged_notified": _notify_aged(now)}


def _register_unrecorded():
    made = 0
    serving = Integration.objects.serving().select_related("tenant")
    for integration in serving.exclude(auth_client_id="").exclude(
            credentials__kind=K.CLIENT_SECRET, credentials__revoked_at__isnull=True, credentials__expires_at__isnull=True):
        try:
            client = keycloak.find_client(integration.auth_client_id)
        except (keycloak.KeycloakUnavailable, keycloak.KeycloakError):
            client = None  # its issue date is then the activation's
        issued = _secret_created_at(client) or _activated_at(integration)
        _current(integration, K.CLIENT_SECRET, issued_at=issued)
        made += 1
    for integration in serving.exclude(api_key_hash="").exclude(
            credentials__kind=K.API_KEY, credentials__revoked_at__isnull=True, credentials__expires_at__isnull=True):
        _current(integration, K.API_KEY)
        made += 1
    return made


def _activated_at(integration):
    first = integration.history.filter(status="active").order_by("history_date").first()
    return first.history_date if first is not None else None


def _revoke_ended(now):
    revoked = 0
    ended = Credential.objects.filter(revoked_at__isnull=True, expires_at__lte=now).order_by("expires_at")
    for credential in ended:
        try:
            _revoke(credential, actor=None, reason="grace period ended", now=now)
        except UpstreamUnavailableError:
            # Keycloak refuses that secret already (its expiry was set at rotation); the next
            # sweep deletes it and records the revocation.
            logger.warning("revocation of credential %s deferred: Keycloak unavailable", credential.pk)
            continue
        except InvalidTransitionError:
            continue  # revoked meanwhile by someone else
        revoked += 1
    return revoked


def _notify_aged(now):
    made = 0
    limit = settings.SCP_CREDENTIAL_MAX_AGE_DAYS
    for credential in aged(Integration.objects.serving(), now).select_related("integration__partner"):
        integration = credential.integration
        what = credential.get_kind_display() + (f" {credential.prefix}…" if credential.prefix else "")
        with transaction.atomic():
            made += len(notify(
                NotificationEvent.CREDENTIAL_AGED, integration=integration, key=f"credential:{credential.pk}",
                recipients=partner_contacts(integration.partner) + tenant_admins(integration.tenant_id),
                detail=(f"Its {what} was issued on {credential.issued_at:%Y-%m-%d}, more than {limit} days ago. "
                        "Rotate it: a grace period of up to 7 days keeps the old one working while the partner switches."),
            ))
    return made
