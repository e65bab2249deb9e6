"""Credentials without downtime (issue #14 item 5): the register of every credential issued to
an integration (its Keycloak client secret, its API key), rotation with a grace period in which
the previous one keeps working, early revocation, last use, and the sweep that ends graces and
tells the owners of credentials past their maximum age.

Client secrets live in Keycloak: the realm's client policy (`secret-rotation` executor,
keycloak/realm-scp.json) keeps the previous secret after a rotation, and `keycloak.rotate_secret`
sets its end to the grace the rotator chose, so Keycloak itself refuses it from then on; the
sweep deletes it and records the revocation. Keycloak keeps only one previous secret, so a
second rotation while one is in grace is refused. Rotation, revocation and the sweep take turns
per integration (`_locked`). Tokens already obtained with a secret stay valid until they expire
(KEYCLOAK_INTEGRATION_TOKEN_LIFESPAN, 5 minutes): ending a secret stops new tokens, not those.
API keys are checked by the exchange: the current key's hash on the Integration row is the fast
path, the register only on a mismatch.
"""
import contextlib
import datetime
import logging
import math
import time
import zlib

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditRecord
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


def token_minutes():
    """At most how long (whole minutes) a token obtained with a client secret stays valid after
    the secret ends: Keycloak does not revoke tokens already issued, they run to their `exp`."""
    return math.ceil(settings.KEYCLOAK_INTEGRATION_TOKEN_LIFESPAN / 60)


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
    return Credential.objects.usable(now).filter(integration=integration, kind=kind,
                                                 expires_at__isnull=False).order_by("-expires_at")


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
        if not Credential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
                revoked_at=now, revoked_reason=reason):
            continue  # revoked meanwhile, and recorded by whoever did it
        _audit(AuditEvent.CREDENTIAL_REVOKED, integration, actor, request_id,
               {"kind": kind, "credential": credential.pk, "reason": reason})


def _audit(event, integration, actor, request_id, details):
    audit_record(
        event_type=event, tenant=integration.tenant, integration=integration, actor_user=actor,
        actor="" if actor else "system", client_id=integration.auth_client_id, request_id=request_id,
        verticals=integration.vertical_codes(), details=details,
    )


def _current(integration, kind, *, issued_at=None):
    """The current credential of this kind (at most one: a constraint of the table), registered
    now when the integration has no credential of this kind at all (activated before the
    register existed: it keeps working and can be rotated). None when the register has some of
    this kind but none current: it is not guessed (a row made up then could stand for a secret
    already replaced)."""
    current = Credential.objects.filter(integration=integration, kind=kind, revoked_at__isnull=True,
                                        expires_at__isnull=True).order_by().first()
    if current is not None:
        return current
    if Credential.objects.filter(integration=integration, kind=kind).exists():
        logger.warning("the register has no current %s of integration %s", kind, integration.pk)
        return None
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


# --- one credential change of an integration at a time ----------------------------------------

# Class of PostgreSQL advisory locks taken by credential changes (audit.chain's sealer uses 0x5C9A).
_LOCK_CLASS = 0x5C14
# How long a credential change waits for another one of the same integration before giving up.
_LOCK_WAIT = "20s"
_BUSY = "Another change of this integration's credentials is under way; try again in a minute."


@contextlib.contextmanager
def _locked(integration_id):
    """A transaction holding the integration's credentials lock, for one rotation, revocation or
    sweep step, from its first read of the register to its last Keycloak call and write.

    Why: Keycloak keeps one previous secret per client, and a rotation takes several calls
    (read, new secret, grace end). A revocation or another rotation landing between them would
    be undone, or cut a grace short, so they take turns per integration. The lock is a
    transaction-scoped advisory lock on (class, integration): it blocks nothing but other
    credential changes of the same integration (not the exchange, not the integration's row),
    and is released when the transaction ends, whatever happens. The Keycloak calls inside it
    are a handful, each bounded by KEYCLOAK_TIMEOUT_SECONDS; a change that waits longer than
    _LOCK_WAIT for another one gives up (409) and changes nothing."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            key = zlib.crc32(str(integration_id).encode()) & 0x7FFFFFFF
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                               [_LOCK_WAIT])
                (previous_timeout, _), = cursor.fetchall()
                try:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, key])
                except OperationalError as exc:
                    if getattr(getattr(exc, "__cause__", None), "sqlstate", None) == "55P03":  # lock_not_available
                        raise InvalidTransitionError(_BUSY) from exc
                    raise
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous_timeout])
        yield


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


def _keycloak_down(what, exc):
    # Keycloak's own words (admin URL, client UUID, response body) stay in the server's log.
    logger.warning("Keycloak failed during a credential %s: %s", what, exc)
    return UpstreamUnavailableError("Keycloak is unavailable, so nothing changed; it can be retried.")


def integration_rotate_secret(*, integration, actor, grace_seconds=None, request_id=""):
    """Issue a new Keycloak client secret; the previous one keeps working for `grace_seconds`
    (0 to 7 days; default 24 h), then is revoked. Returns (integration, credentials) with the
    new secret, shown once.

    Under the integration's credentials lock (`_locked`), so no revocation, sweep or other
    rotation interleaves; the register's rows (the previous secret's grace end and its
    successor) are written in the same transaction, after Keycloak answered, so the register
    never shows a previous secret in grace without the secret that succeeded it. When something
    fails after the new secret was asked for, the outcome is found out (was a new secret
    issued?) and recorded, and the caller gets 503 without the secret (see _rotation_incomplete)."""
    require(actor, "rotate-secret", integration)
    grace = _grace(grace_seconds)
    incomplete = None
    with _locked(integration.pk):
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
        except (keycloak.KeycloakUnavailable, keycloak.KeycloakError) as exc:
            raise _keycloak_down("rotation", exc) from exc
        if client is None:
            raise InvalidTransitionError("The integration's Keycloak client is missing; reactivate it.")
        previous = _current(integration, K.CLIENT_SECRET, issued_at=_secret_created_at(client))
        grace_end = timezone.now() + datetime.timedelta(seconds=grace)
        try:
            secret, kept = keycloak.rotate_secret(client["id"], keep_previous_until=grace_end if grace else None)
        except keycloak.RotationIncomplete as exc:
            logger.warning("rotation of the secret of %s incomplete (new secret issued: %s): %s",
                           integration.pk, exc.applied, exc.cause)
            incomplete, secret = exc, None
            # The previous secret: ended in Keycloak as asked (its grace end written, or deleted
            # for no grace), or else left to the sweep, which ends it at `expires_at` (None).
            if grace:
                kept = True if exc.previous_stopped else None
            else:
                kept = False if exc.previous_stopped else None
        except (keycloak.KeycloakUnavailable, keycloak.KeycloakError) as exc:
            raise _keycloak_down("rotation", exc) from exc
        now = timezone.now()
        if previous is not None:
            still = Credential.objects.filter(pk=previous.pk, revoked_at__isnull=True)
            if kept is False:  # no grace asked, or Keycloak kept no previous secret: it is gone already
                still.update(revoked_at=now, revoked_reason="rotated without grace" if not grace
                             else "Keycloak kept no previous secret")
            else:
                # Its grace; with none asked but the old secret perhaps still in Keycloak (its
                # deletion failed), a grace ended now: the sweep (or the next rotation) deletes it.
                still.update(expires_at=grace_end if grace else now)
        current = Credential.objects.create(integration=integration, kind=K.CLIENT_SECRET, issued_at=now,
                                            issued_by=actor)
        details = {
            "kind": K.CLIENT_SECRET, "credential": current.pk, "previous": previous.pk if previous else None,
            "grace_seconds": grace,
            "previous_valid_until": grace_end.isoformat() if grace and kept is not False else None,
            "keycloak_enforces_grace_end": kept is True,
        }
        if incomplete is not None:
            # Recorded as issued even when Keycloak could not be asked: the previous secret's end
            # is then enforced by the sweep, which is the safe side of not knowing.
            details.update(secret_delivered=False, new_secret_issued=incomplete.applied)
        _audit(AuditEvent.CREDENTIAL_ROTATED, integration, actor, request_id, details)
    if incomplete is not None:
        raise _rotation_incomplete(incomplete, grace, grace_end)
    return integration, {
        "client_id": integration.auth_client_id, "client_secret": secret,
        "previous_valid_until": grace_end if kept is not False else None,
    }


def _rotation_incomplete(exc, grace, grace_end):
    """The answer to a rotation that failed after the new secret was asked for: its secret is
    known to no one (it is not handed out: its rotation did not complete), so the way on is to
    rotate again."""
    happened = "Keycloak issued a new client secret" if exc.applied else "Keycloak may have issued a new client secret"
    if grace:
        previous = (f"The previous secret keeps working until {grace_end:%Y-%m-%d %H:%M} UTC, when the governance "
                    "sweep ends it; to rotate again before then, revoke it first (revoke-credential).")
    elif exc.previous_stopped:
        previous = "The previous secret no longer works."
    else:
        previous = ("The previous secret may still work until the next governance sweep (or the next rotation) "
                    "deletes it.")
    return UpstreamUnavailableError(
        f"{happened}, but the rotation could not be completed (Keycloak failed or its answer was lost). "
        f"The new secret is not known to anyone: rotate again to get one. {previous}")


def integration_rotate_api_key(*, integration, actor, grace_seconds=None, request_id=""):
    """Issue a new API key; the previous one keeps working at the exchange for `grace_seconds`
    (0 to 7 days; default 24 h). Returns (integration, {"api_key", ...}), the key shown once.
    Several earlier keys may be in grace at once: the exchange checks the register."""
    require(actor, "rotate-api-key", integration)
    grace = _grace(grace_seconds)
    key, prefix, key_hash = new_api_key()
    with _locked(integration.pk):
        locked = Integration.objects.select_for_update().select_related("tenant").get(pk=integration.pk)
        _check_serving(locked, "API key")
        if not locked.api_key_hash:
            raise InvalidTransitionError("This integration has no API key to rotate; issue one with its layered controls.")
        now = timezone.now()
        previous = _current(locked, K.API_KEY)
        grace_end = now + datetime.timedelta(seconds=grace)
        if previous is not None:
            if grace:
                Credential.objects.filter(pk=previous.pk, revoked_at__isnull=True).update(expires_at=grace_end)
            else:
                Credential.objects.filter(pk=previous.pk, revoked_at__isnull=True).update(
                    revoked_at=now, revoked_reason="rotated without grace")
        locked.api_key_prefix, locked.api_key_hash = prefix, key_hash
        locked._change_reason = "API key rotated"
        locked._history_user = actor
        locked.save(update_fields=["api_key_prefix", "api_key_hash"])
        current = Credential.objects.create(integration=locked, kind=K.API_KEY, prefix=prefix, key_hash=key_hash,
                                            issued_at=now, issued_by=actor)
        _audit(AuditEvent.CREDENTIAL_ROTATED, locked, actor, request_id, {
            "kind": K.API_KEY, "credential": current.pk, "previous": previous.pk if previous else None,
            "prefix": prefix, "previous_prefix": previous.prefix if previous else "", "grace_seconds": grace,
            "previous_valid_until": grace_end.isoformat() if grace and previous else None,
        })
    return locked, {"api_key": key, "api_key_prefix": prefix,
                    "previous_valid_until": grace_end if grace and previous else None}


def integration_revoke_credential(*, integration, actor, credential, reason="", request_id=""):
    """End a previous credential's grace period now. The current one is not revoked on its own
    (that would leave the integration without one, or an API key no longer required): rotate
    it instead, with no grace to end it at once. Under the integration's credentials lock: a
    rotation under way finishes first, and this then sees (and ends) its previous secret."""
    require(actor, "revoke-credential", integration)
    credential_id = getattr(credential, "pk", credential)
    if isinstance(credential_id, bool) or not isinstance(credential_id, int):
        raise ApiError(404, "not_found", "No such credential of this integration.")
    with _locked(integration.pk):
        credential = Credential.objects.filter(integration=integration, pk=credential_id).first()
        if credential is None:
            raise ApiError(404, "not_found", "No such credential of this integration.")
        state = state_of(credential)
        if state == State.REVOKED:
            raise InvalidTransitionError("This credential is revoked already.")
        if state == State.CURRENT:
            raise InvalidTransitionError(
                "The current credential cannot be revoked on its own: rotate it (a grace of 0 ends the old one at once).")
        integration = _revoke(credential, actor=actor, reason=reason or "revoked before its grace ended",
                              request_id=request_id)
    credential.refresh_from_db()
    return integration


def _revoke(credential, *, actor, reason, request_id="", now=None):
    """Stop a previous credential working and record it (inside `_locked`). For a client secret
    Keycloak's rotated secret is deleted first, and its absence checked, unless it is a newer
    rotation's: Keycloak keeps one, which belongs to the newest previous secret not yet revoked."""
    integration = Integration.objects.select_related("tenant").get(pk=credential.integration_id)
    newer = Credential.objects.filter(integration=integration, kind=credential.kind, revoked_at__isnull=True,
                                      expires_at__isnull=False, issued_at__gt=credential.issued_at)
    if credential.kind == K.CLIENT_SECRET and integration.auth_client_id and not newer.exists():
        try:
            client = keycloak.find_client(integration.auth_client_id)
            if client is not None:
                keycloak.revoke_rotated_secret(client["id"])
        except (keycloak.KeycloakUnavailable, keycloak.KeycloakError) as exc:
            raise _keycloak_down("revocation", exc) from exc
    now = now or timezone.now()
    if not Credential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_reason=reason[:200]):
        raise InvalidTransitionError("This credential is revoked already.")
    _audit(AuditEvent.CREDENTIAL_REVOKED, integration, actor, request_id, {
        "kind": credential.kind, "credential": credential.pk, "prefix": credential.prefix, "reason": reason,
        "grace_end": credential.expires_at.isoformat() if credential.expires_at else None,
    })
    return integration


def _end_lapsed(integration, kind):
    """Record the end of graces already over but not yet swept (inside `_locked`, before a new
    rotation, so the sweep never deletes the rotated secret of the new one)."""
    lapsed = Credential.objects.filter(integration=integration, kind=kind, revoked_at__isnull=True,
                                       expires_at__lte=timezone.now())
    for credential in lapsed:
        _revoke(credential, actor=None, reason="grace period ended")


# --- the exchange: accepting previous API keys and recording last use, cheaply -------------------


def api_key_accepted(integration, key_hash):
    """True when `key_hash` is a previous API key of the integration still in its grace period
    (the exchange asks only when it is not the current key)."""
    in_grace_now = Q(integration_id=integration.pk, kind=K.API_KEY, key_hash=key_hash, revoked_at__isnull=True,
                     expires_at__gt=timezone.now())
    # exists(): one indexed probe, no ordering (a wrong key is the common case here).
    if not Credential.objects.filter(in_grace_now).exists():
        return False
    _touch(f"previous:{integration.pk}:{key_hash}", in_grace_now)
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
    """Register the current credentials of serving integrations that have none of that kind
    (activated before the register existed), each under its integration's lock."""
    made = 0
    serving = Integration.objects.serving()
    for integration_id in serving.exclude(auth_client_id="").exclude(
            credentials__kind=K.CLIENT_SECRET).values_list("pk", flat=True):
        made += _register_one(integration_id, K.CLIENT_SECRET)
    for integration_id in serving.exclude(api_key_hash="").exclude(credentials__kind=K.API_KEY).values_list("pk", flat=True):
        made += _register_one(integration_id, K.API_KEY)
    return made


def _register_one(integration_id, kind):
    try:
        with _locked(integration_id):
            integration = Integration.objects.select_related("tenant").get(pk=integration_id)
            if Credential.objects.filter(integration=integration, kind=kind).exists():
                return 0  # registered meanwhile (a rotation)
            issued = None
            if kind == K.CLIENT_SECRET:
                try:
                    client = keycloak.find_client(integration.auth_client_id)
                except (keycloak.KeycloakUnavailable, keycloak.KeycloakError):
                    client = None  # its issue date is then the activation's
                issued = _secret_created_at(client) or _activated_at(integration)
            _current(integration, kind, issued_at=issued)
            return 1
    except InvalidTransitionError:
        return 0  # another change of its credentials holds the lock: the next sweep


def _activated_at(integration):
    first = integration.history.filter(status="active").order_by("history_date").first()
    return first.history_date if first is not None else None


def _revoke_ended(now):
    """Revoke previous credentials whose grace ended, one at a time under its integration's lock."""
    revoked = 0
    ended = Credential.objects.filter(revoked_at__isnull=True, expires_at__lte=now).order_by("expires_at")
    for pk, integration_id in list(ended.values_list("pk", "integration_id")):
        try:
            with _locked(integration_id):
                credential = Credential.objects.filter(pk=pk, revoked_at__isnull=True, expires_at__lte=now).first()
                if credential is None:
                    continue  # revoked meanwhile by someone else
                _revoke(credential, actor=None, reason="grace period ended", now=now)
        except UpstreamUnavailableError:
            _log_deferred(pk, integration_id)
            continue
        except InvalidTransitionError:
            continue  # another change of its credentials holds the lock: the next sweep
        revoked += 1
    return revoked


def _log_deferred(pk, integration_id):
    # Whether Keycloak refuses the secret meanwhile depends on whether its rotation could write
    # the grace end there (recorded in the rotation's audit record).
    rotation = AuditRecord.objects.filter(event_type=AuditEvent.CREDENTIAL_ROTATED, integration_id=integration_id,
                                          details__previous=pk).values_list("details", flat=True).first()
    if rotation and rotation.get("keycloak_enforces_grace_end"):
        logger.warning("revocation of credential %s deferred (Keycloak unavailable); Keycloak refuses it already "
                       "(its grace end was written at rotation)", pk)
    else:
        logger.error("revocation of credential %s deferred (Keycloak unavailable): Keycloak may still accept this "
                     "previous secret (its grace end could not be written there; the policy ends it at most 7 days "
                     "after its rotation); the next sweep retries", pk)


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
