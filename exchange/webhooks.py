"""Webhook delivery per Standard Webhooks (spec §5.2, §8.2): signed, retried with
exponential backoff and jitter on a fixed schedule, Retry-After honoured, no retry on 4xx
other than 408/429, 410 disables the endpoint, a circuit breaker per endpoint, exhausted
deliveries kept as dead letters. Secrets and full URLs are never logged."""
import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import DisclosureChannel as Channel
from audit.services import AuditEvent, AuditResult, IncidentKind, IncidentSeverity, audit_record, incident_open
from lifecycle.models import NotificationEvent
from lifecycle.notifications import notify, partner_contacts
from scp_core.errors import ApiError

from .events import release_of, visible_body
from .metrics import count_webhook
from .models import Delivery, DeliveryAttempt, DeliveryStatus, Subscription, endpoint_display

# Delay before attempt n+1 after attempt n failed (attempt 1 is immediate).
RETRY_SCHEDULE = [
    datetime.timedelta(seconds=5),
    datetime.timedelta(minutes=5),
    datetime.timedelta(minutes=30),
    datetime.timedelta(hours=2),
    datetime.timedelta(hours=5),
    datetime.timedelta(hours=10),
    datetime.timedelta(hours=10),
]
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.1  # ±10 %
CIRCUIT_THRESHOLD = 5  # consecutive failures that open the circuit for a while
CIRCUIT_OPEN = datetime.timedelta(minutes=1)
DISABLE_AFTER = 20  # consecutive failures that disable the endpoint
LEASE = datetime.timedelta(seconds=60)  # an attempt's hold on its delivery: longer than the 10 s timeout
_RETRYABLE_4XX = {408, 429}


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret, msg_id, timestamp, body):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_target(url):
    """HTTPS to a public address only; loopback receivers where the settings allow them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError) as exc:
        raise ApiError(422, "validation_error", "The webhook host cannot be resolved.",
                       errors=[{"field": "url", "message": "unresolvable host"}]) from exc
    ips = {ipaddress.ip_address(a.split("%")[0]) for a in addresses}
    loopback_ok = settings.SCP_WEBHOOK_ALLOW_LOOPBACK and all(ip.is_loopback for ip in ips)
    if parts.scheme != "https" and not (loopback_ok and parts.scheme == "http"):
        raise ApiError(422, "validation_error", "Webhook URLs must use HTTPS.", errors=[{"field": "url", "message": "https only"}])
    if not loopback_ok and any(not ip.is_global for ip in ips):
        raise ApiError(422, "validation_error", "Webhook URLs must reach a public address.",
                       errors=[{"field": "url", "message": "private, loopback or reserved address"}])


def next_attempt(attempt_number, now, retry_after=None, rng=random):
    """When attempt `attempt_number + 1` is due, or None when the schedule is exhausted."""
    if attempt_number >= MAX_ATTEMPTS:
        return None
    base = RETRY_SCHEDULE[attempt_number - 1]
    delay = base * (1 + rng.uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, datetime.timedelta(seconds=retry_after))
    return now + delay


def _retry_after(response):
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


_local = threading.local()


def _http():
    """One HTTP session per worker thread: keep-alive connections to receivers are reused
    instead of a new TCP (and TLS) handshake per delivery (a Session is not shared between
    threads)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


_DELIVERY_JOINS = ("event__tenant", "event__vertical", "subscription__integration__partner",
                   "subscription__integration__data_contract__contract")


def deliver(delivery_id, *, now=None, session=None):
    """Make one attempt at a due delivery; returns its status afterwards (None: not due,
    done, or another worker's). `now` is the scheduling clock (tests control it); signatures
    and leases carry the real time.

    No lock is held across the network call: the delivery is claimed for a lease (one short
    UPDATE), consent and scope are checked, the signed POST goes out outside any transaction,
    and the attempt (its row, its audit record and disclosure, the next state) is recorded in
    one short transaction under the row lock; several deliveries can so be in flight at once
    (deliver_many)."""
    now = now or timezone.now()
    lease = _claim(delivery_id, now)
    if lease is None:
        return None
    delivery = Delivery.objects.select_related(*_DELIVERY_JOINS).get(pk=delivery_id)
    subscription = delivery.subscription
    if not subscription.active:
        with transaction.atomic():
            return _finish(delivery, DeliveryStatus.DEAD, "subscription disabled")
    if subscription.circuit_open_until and subscription.circuit_open_until > now:
        Delivery.objects.filter(pk=delivery.pk, claimed_until=lease).update(
            next_attempt_at=subscription.circuit_open_until, claimed_until=None)
        return delivery.status
    # Consent, vertical and the integration's state, re-checked now (spec §4.3).
    payload = visible_body(delivery.event, subscription.integration)
    if payload is None:
        with transaction.atomic():
            _audit_attempt(delivery, subscription, AuditResult.DENIED, error="not visible to the subscriber at delivery time")
            return _finish(delivery, DeliveryStatus.SKIPPED, "not visible to the subscriber at delivery time")
    try:
        check_target(subscription.url)
    except ApiError as exc:
        with transaction.atomic():
            return _finish(delivery, DeliveryStatus.DEAD, str(exc.detail))
    body = json.dumps(payload, separators=(",", ":"))
    timestamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "webhook-id": str(delivery.id),
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(subscription.secret, str(delivery.id), timestamp, body),
        "user-agent": "SCP-Integration-Layer-Webhooks/1",
    }
    started = time.monotonic()
    status_code, error, retry_after, sent = None, "", None, True
    try:
        response = (session or _http()).post(subscription.url, data=body, headers=headers, timeout=10, allow_redirects=False)
        status_code, retry_after = response.status_code, _retry_after(response)
    except requests.RequestException as exc:
        error = exc.__class__.__name__
        sent = not _never_connected(exc)
    duration_ms = int((time.monotonic() - started) * 1000)
    # Once a connection was made the body may have arrived, whatever came back (an answer, a
    # timeout, a reset): a disclosure. Only an attempt that never connected released nothing.
    released = release_of(delivery.event, payload, subscription.integration, Channel.WEBHOOK) if sent else None
    with transaction.atomic():
        current = Delivery.objects.select_for_update().filter(pk=delivery.pk).values("attempts", "claimed_until").get()
        delivery.attempts = current["attempts"] + 1
        DeliveryAttempt.objects.create(
            delivery=delivery, number=delivery.attempts, attempted_at=now, status_code=status_code, error=error,
            duration_ms=duration_ms,
        )
        delivered = status_code is not None and 200 <= status_code < 300
        _audit_attempt(delivery, subscription, AuditResult.SUCCESS if delivered else AuditResult.FAILURE,
                       status_code=status_code, error=error or (f"HTTP {status_code}" if not delivered else ""),
                       duration_ms=duration_ms, disclosures=[released] if released else ())
        if current["claimed_until"] != lease:  # the lease ran out and another worker took over: it decides
            Delivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts)
            return None
        # The subscription's counters under its row lock: concurrent deliveries share it.
        subscription = Subscription.objects.select_for_update().select_related("integration__tenant").get(pk=subscription.pk)
        delivery.subscription = subscription
        if delivered:
            if subscription.consecutive_failures or subscription.circuit_open_until:  # a write only when it changes
                subscription.consecutive_failures = 0
                subscription.circuit_open_until = None
                subscription.save(update_fields=["consecutive_failures", "circuit_open_until"])
            delivery.delivered_at = now
            return _finish(delivery, DeliveryStatus.DELIVERED, "")
        return _failed(delivery, subscription, status_code, error, retry_after, now)


def _claim(delivery_id, now):
    """Claim a due delivery for a lease (one UPDATE); returns the lease, or None when it is not
    due, done, or claimed by a live attempt elsewhere."""
    real_now = timezone.now()
    lease = real_now + LEASE
    claimed = Delivery.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=real_now),
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now,
    ).update(claimed_until=lease)
    return lease if claimed else None


def deliver_many(delivery_ids, *, concurrency=None):
    """Attempt these deliveries with up to `concurrency` (SCP_WEBHOOK_CONCURRENCY) in flight at
    once, each in its own thread with its own database connection; returns their statuses."""
    ids = list(delivery_ids)
    if not ids:
        return []
    workers = min(concurrency or settings.SCP_WEBHOOK_CONCURRENCY, len(ids))
    if workers <= 1:
        return [deliver(delivery_id) for delivery_id in ids]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook") as pool:
        return list(pool.map(_deliver_in_thread, ids))


def _deliver_in_thread(delivery_id):
    try:
        return deliver(delivery_id)
    finally:
        connection.close()  # this thread's own connection


def _never_connected(exc):
    """Whether the attempt failed before any byte could reach the receiver (no connection:
    refused, unreachable, name not resolved, or the connect itself timed out)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)
        return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError))
    return False


def _audit_attempt(delivery, subscription, result, *, status_code=None, error="", duration_ms=None, disclosures=()):
    """Each attempt, and each delivery withheld at delivery time, in the chained audit log
    (spec §9), in the transaction of the attempt's row: what was released, to whom, how it went."""
    event, integration = delivery.event, subscription.integration
    audit_record(
        event_type=AuditEvent.WEBHOOK_ATTEMPT, result=result, tenant=event.tenant, integration=integration,
        actor=f"webhook:{subscription.pk}", client_id=integration.auth_client_id,
        verticals=[event.vertical.code] if event.vertical_id else [], status_code=status_code, error_code=error[:60],
        details={"delivery": str(delivery.pk), "attempt": delivery.attempts, "event_type": event.event_type,
                 "event_id": event.pk, "person_id": str(event.person_id) if event.person_id else None,
                 "endpoint_host": urlsplit(subscription.url).hostname, "duration_ms": duration_ms},
        disclosures=disclosures,
    )


def _finish(delivery, status, error):
    count_webhook(tenant=delivery.event.tenant.code, integration_id=delivery.subscription.integration_id,
                  result="retry" if status == DeliveryStatus.PENDING else status)
    delivery.status = status
    delivery.last_error = error[:300]
    delivery.claimed_until = None  # the attempt is over: the next one may claim it
    delivery.save()
    return status


def _failed(delivery, subscription, status_code, error, retry_after, now):
    subscription.consecutive_failures += 1
    reason = f"HTTP {status_code}" if status_code else error
    if status_code == 410:
        _disable(subscription, "the endpoint answered 410 Gone")
    elif subscription.consecutive_failures >= DISABLE_AFTER:
        _disable(subscription, f"{subscription.consecutive_failures} consecutive failed deliveries")
    elif subscription.consecutive_failures >= CIRCUIT_THRESHOLD:
        subscription.circuit_open_until = now + CIRCUIT_OPEN
    subscription.save(update_fields=["consecutive_failures", "circuit_open_until", "active", "disabled_reason"])
    if not subscription.active:
        return _finish(delivery, DeliveryStatus.DEAD, reason)
    permanent = status_code is not None and 400 <= status_code < 500 and status_code not in _RETRYABLE_4XX
    due = None if permanent else next_attempt(delivery.attempts, now, retry_after)
    if due is None:
        return _finish(delivery, DeliveryStatus.DEAD, reason)
    delivery.next_attempt_at = due
    return _finish(delivery, DeliveryStatus.PENDING, reason)


def _disable(subscription, reason):
    if not subscription.active:
        return  # already disabled (concurrent deliveries fail together): told once
    subscription.active = False
    subscription.disabled_reason = reason[:200]
    integration = subscription.integration
    incident_open(
        kind=IncidentKind.DELIVERY_FAILING, severity=IncidentSeverity.MEDIUM,
        summary=f"webhook endpoint of {integration.integration_name} disabled: {reason}",
        tenant=integration.tenant, integration=integration, details={"subscription": str(subscription.pk)},
    )
    notify(NotificationEvent.ENDPOINT_DISABLED, integration=integration,
           key=f"{subscription.pk}:{timezone.now().isoformat()}", recipients=partner_contacts(integration.partner),
           detail=f"Endpoint {endpoint_display(subscription.url)} is disabled: {reason}. Events wait in the pull feed; "
                  "fix the endpoint and replay its deliveries from the portal.")


def due_deliveries(now=None, limit=500):
    now = now or timezone.now()
    return list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now, subscription__active=True)
        .order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
    )


__all__ = ["Subscription", "check_target", "deliver", "deliver_many", "due_deliveries", "new_secret", "next_attempt", "sign"]
