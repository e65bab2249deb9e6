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
import logging
import os
import random
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
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

from .events import release_of, visible_bodies
from .metrics import count_webhook
from .models import Delivery, DeliveryAttempt, DeliveryStatus, Subscription, endpoint_display

log = logging.getLogger(__name__)

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


# The longest Retry-After honoured: a receiver cannot park a delivery beyond the schedule's own
# longest wait (nor overflow the date arithmetic with a huge number).
MAX_RETRY_AFTER = int(max(RETRY_SCHEDULE).total_seconds())


def _retry_after(response):
    """Retry-After in seconds (ASCII digits only: "²" is a digit to str.isdigit, not to int),
    at most MAX_RETRY_AFTER; None when absent or not a number of seconds."""
    value = response.headers.get("Retry-After", "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return min(int(value), MAX_RETRY_AFTER)


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
BATCH = 100  # deliveries claimed by one statement (deliver_many, the sweeper)


def deliver(delivery_id, *, now=None, session=None):
    """Make one attempt at a due delivery; returns its status afterwards (None: not due,
    done, or another worker's). `now` is the scheduling clock (tests control it); signatures
    and leases carry the real time. See deliver_batch."""
    return deliver_batch([delivery_id], now=now, session=session)[0]


def deliver_batch(delivery_ids, *, now=None, session=None, concurrency=None):
    """Make one attempt at each due delivery of `delivery_ids`; returns their statuses in that
    order (None: not due, done, or another worker's).

    They go in waves of `concurrency` (SCP_WEBHOOK_CONCURRENCY). No lock is held across the
    network call: a wave is claimed for a lease by one UPDATE (so a redelivered task, or a
    second sweep, finds it taken and sends nothing), read with what the checks need in one
    query, and consent, vertical and the integration's state are checked for the whole wave
    right then, after the claim (one consent query per integration and vertical); its signed
    POSTs go out at once, outside any transaction, and each attempt (its row, its audit record
    and disclosure, the delivery's next state) is recorded in its own short transaction. Waves,
    not the whole batch at once: a consent check is never older than the wave it clears (a
    withdrawal during a long batch blocks the next wave), and a lease covers one wave's sending,
    not a hundred slow endpoints'. The subscription's row is locked only when its failure
    counters change: a success resets them with one conditional UPDATE, which neither takes nor
    waits for its lock while they are clear, so deliveries to one endpoint do not queue behind
    each other."""
    ids = [str(Delivery._meta.pk.to_python(pk)) for pk in delivery_ids]
    now = now or timezone.now()
    size = max(1, concurrency or settings.SCP_WEBHOOK_CONCURRENCY)
    statuses = {}
    for start in range(0, len(ids), size):
        wave = _claim(ids[start:start + size], now)
        statuses.update(_deliver_claimed(wave, now, session=session, concurrency=concurrency))
    return [statuses.get(pk) for pk in ids]


def _deliver_claimed(leases, now, *, session=None, concurrency=None):
    """Check, send and record the deliveries claimed by `_claim`; {id: status}."""
    if not leases:
        return {}
    deliveries = Delivery.objects.select_related(*_DELIVERY_JOINS).filter(pk__in=list(leases))
    statuses, outgoing = {}, []
    for delivery, status in _prepare(deliveries, leases, now):
        if status is None:
            outgoing.append(delivery)
        else:
            statuses[str(delivery.pk)] = status
    for delivery, outcome in _posted(outgoing, session, concurrency):
        try:
            statuses[str(delivery.pk)] = _record(delivery, outcome, now)
        except Exception:  # noqa: BLE001 - one attempt's failure must not leave its wave-mates unrecorded
            # Its transaction rolled back: the lease runs out and a later attempt decides.
            log.exception("webhook delivery %s: the attempt could not be recorded", delivery.pk)
    return statuses


def _claim(delivery_ids, now):
    """Claim the due deliveries among `delivery_ids` for a lease, in one UPDATE; returns
    {id: (lease, attempts so far)} of those claimed here (not due, done, or held by a live
    attempt elsewhere: left out)."""
    if not delivery_ids:
        return {}
    real_now = timezone.now()
    lease = real_now + LEASE
    ops, pk = connection.ops, Delivery._meta.pk
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET claimed_until = %s WHERE id IN ({', '.join(['%s'] * len(delivery_ids))}) "
            "AND status = %s AND next_attempt_at <= %s AND (claimed_until IS NULL OR claimed_until < %s) "
            "RETURNING id, attempts",
            [ops.adapt_datetimefield_value(lease), *(pk.get_db_prep_value(pk.to_python(i), connection) for i in delivery_ids),
             DeliveryStatus.PENDING, ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(real_now)])
        rows = cursor.fetchall()
    return {str(pk.to_python(row[0])): (lease, row[1]) for row in rows}


@dataclass(frozen=True)
class _Outgoing:
    """What one claimed delivery sends: set on the Delivery as `outgoing`."""

    lease: datetime.datetime
    attempts: int
    payload: dict
    body: str
    headers: dict


def _prepare(deliveries, leases, now):
    """[(delivery, None)] for each delivery to send now, its signed request attached as
    `outgoing`; (delivery, status) for those settled without sending (subscription disabled,
    circuit open, not visible to the subscriber now, a target no longer allowed)."""
    deliveries = list(deliveries)
    # Consent, vertical and the integration's state, re-checked now (spec §4.3): after the claim.
    payloads = visible_bodies([(d.event, d.subscription.integration) for d in deliveries])
    targets = {}  # each endpoint checked (its addresses resolved) once per batch
    prepared = []
    for delivery, payload in zip(deliveries, payloads):
        lease, attempts = leases[str(delivery.pk)]
        prepared.append((delivery, _settled(delivery, lease, payload, targets, now)))
        if prepared[-1][1] is None:
            body = json.dumps(payload, separators=(",", ":"))
            timestamp = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                "webhook-id": str(delivery.id),
                "webhook-timestamp": timestamp,
                "webhook-signature": sign(delivery.subscription.secret, str(delivery.id), timestamp, body),
                "user-agent": "SCP-Integration-Layer-Webhooks/1",
            }
            delivery.outgoing = _Outgoing(lease, attempts, payload, body, headers)
    return prepared


def _settled(delivery, lease, payload, targets, now):
    """The delivery's status when it is not to be sent now (recorded here), else None."""
    subscription = delivery.subscription
    if not subscription.active:
        with transaction.atomic():
            return _finish(delivery, DeliveryStatus.DEAD, "subscription disabled")
    if subscription.circuit_open_until and subscription.circuit_open_until > now:
        Delivery.objects.filter(pk=delivery.pk, claimed_until=lease).update(
            next_attempt_at=subscription.circuit_open_until, claimed_until=None)
        return delivery.status
    if payload is None:
        with transaction.atomic():
            _audit_attempt(delivery, subscription, AuditResult.DENIED, error="not visible to the subscriber at delivery time")
            return _finish(delivery, DeliveryStatus.SKIPPED, "not visible to the subscriber at delivery time")
    if subscription.url not in targets:
        try:
            check_target(subscription.url)
            targets[subscription.url] = None
        except ApiError as exc:
            targets[subscription.url] = str(exc.detail)
    if targets[subscription.url] is not None:
        with transaction.atomic():
            return _finish(delivery, DeliveryStatus.DEAD, targets[subscription.url])
    return None


MAX_ANSWER_BYTES = 64 * 1024  # of a receiver's response body read before its connection is dropped


def _drain(response):
    """Read the answer's body up to MAX_ANSWER_BYTES (a short one leaves its connection to be
    reused; past that the connection is closed with the response). A broken body changes
    nothing: the status is what was answered."""
    read = 0
    try:
        for chunk in response.iter_content(8192):
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                return
    except requests.RequestException:
        return


def _post(delivery, session=None):
    """The signed POST: (status code, error, Retry-After, whether anything may have arrived,
    duration in ms)."""
    started = time.monotonic()
    status_code, error, retry_after, sent = None, "", None, True
    try:
        # Streamed: only the status and headers matter, and a receiver's body is read (so that
        # the keep-alive connection can be reused) up to MAX_ANSWER_BYTES, never into memory whole.
        with (session or _http()).post(delivery.subscription.url, data=delivery.outgoing.body, stream=True,
                                       headers=delivery.outgoing.headers, timeout=10, allow_redirects=False) as response:
            status_code, retry_after = response.status_code, _retry_after(response)
            _drain(response)
    except requests.RequestException as exc:
        error = exc.__class__.__name__
        sent = not _never_connected(exc)
    except Exception as exc:  # noqa: BLE001 - whatever the receiver's answer breaks, the attempt is recorded
        error = exc.__class__.__name__
    return status_code, error, retry_after, sent, int((time.monotonic() - started) * 1000)


def _posted(deliveries, session, concurrency):
    """(delivery, outcome) of their POSTs, each as it completes (a slow endpoint does not hold
    back the recording of the others), up to `concurrency` in flight at once on the process's
    sender threads (each with its own keep-alive session); one alone is sent from the calling
    thread."""
    concurrency = concurrency or settings.SCP_WEBHOOK_CONCURRENCY
    if len(deliveries) <= 1 or concurrency <= 1 or session is not None:
        for delivery in deliveries:
            yield delivery, _post(delivery, session)
        return
    futures = {_senders(concurrency).submit(_post, delivery): delivery for delivery in deliveries}
    for future in as_completed(futures):
        yield futures[future], future.result()


_pools = {}
_pools_lock = threading.Lock()


def _senders(size):
    """The process's pool of `size` sender threads (made on first use, in this process: a
    forked worker does not inherit its parent's threads)."""
    key = (os.getpid(), size)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhook-post")
        return _pools[key]


def _record(delivery, outcome, now):
    """The attempt, recorded in one short transaction: its row, its audit record and
    disclosure, the delivery's next state; returns that state (None: the lease ran out and
    another attempt decides)."""
    status_code, error, retry_after, sent, duration_ms = outcome
    subscription, outgoing = delivery.subscription, delivery.outgoing
    # Once a connection was made the body may have arrived, whatever came back (an answer, a
    # timeout, a reset): a disclosure. Only an attempt that never connected released nothing.
    released = release_of(delivery.event, outgoing.payload, subscription.integration, Channel.WEBHOOK) if sent else None
    delivered = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        # Still ours? The lease is checked, and the row locked, by the write itself: nothing
        # else counts attempts while the lease holds, so the claim's count is current.
        delivery.attempts = outgoing.attempts + 1
        mine = Delivery.objects.filter(pk=delivery.pk, claimed_until=outgoing.lease)
        if delivered:
            delivery.status, delivery.last_error, delivery.delivered_at, delivery.claimed_until = (
                DeliveryStatus.DELIVERED, "", now, None)
            held = mine.update(status=delivery.status, attempts=delivery.attempts, last_error="", delivered_at=now,
                               claimed_until=None)
        else:
            held = mine.update(attempts=delivery.attempts)
        if not held:  # the lease ran out and another worker took over: it decides
            current = Delivery.objects.select_for_update().filter(pk=delivery.pk).values_list("attempts", flat=True).get()
            delivery.attempts = current + 1
            Delivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts)
        DeliveryAttempt.objects.create(
            delivery=delivery, number=delivery.attempts, attempted_at=now, status_code=status_code, error=error,
            duration_ms=duration_ms,
        )
        _audit_attempt(delivery, subscription, AuditResult.SUCCESS if delivered else AuditResult.FAILURE,
                       status_code=status_code, error=error or (f"HTTP {status_code}" if not delivered else ""),
                       duration_ms=duration_ms, disclosures=[released] if released else ())
        if not held:
            return None
        if delivered:
            # Clear the endpoint's failure counters only where they are set: no write, and no
            # wait for the row, while they are clear (a failing attempt holds it while it counts).
            Subscription.objects.filter(Q(consecutive_failures__gt=0) | Q(circuit_open_until__isnull=False),
                                        pk=subscription.pk).update(consecutive_failures=0, circuit_open_until=None)
            _count(delivery, DeliveryStatus.DELIVERED)
            return DeliveryStatus.DELIVERED
        # The subscription's counters under its row lock: concurrent failures share it.
        subscription = Subscription.objects.select_for_update().select_related("integration__tenant").get(pk=subscription.pk)
        delivery.subscription = subscription
        return _failed(delivery, subscription, status_code, error, retry_after, now)


def deliver_many(delivery_ids, *, concurrency=None):
    """Attempt these deliveries, claimed BATCH at a time by one statement, with up to
    `concurrency` (SCP_WEBHOOK_CONCURRENCY) POSTs in flight at once; returns their statuses."""
    ids = list(delivery_ids)
    statuses = []
    for start in range(0, len(ids), BATCH):
        statuses += deliver_batch(ids[start:start + BATCH], concurrency=concurrency)
    return statuses


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
    _count(delivery, status)
    delivery.status = status
    delivery.last_error = error[:300]
    delivery.claimed_until = None  # the attempt is over: the next one may claim it
    delivery.save(update_fields=["status", "attempts", "next_attempt_at", "last_error", "delivered_at", "claimed_until"])
    return status


def _count(delivery, status):
    count_webhook(tenant=delivery.event.tenant.code, integration_id=delivery.subscription.integration_id,
                  result="retry" if status == DeliveryStatus.PENDING else status)


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


__all__ = ["Subscription", "check_target", "deliver", "deliver_batch", "deliver_many", "due_deliveries", "new_secret", "next_attempt", "sign"]
