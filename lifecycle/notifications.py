"""E-mail notifications of everyday governance (issue #14): who is told of what.

`notify` records one `Notification` per event and recipient in the caller's transaction (its
`key` makes it one: a repeated sweep or a retried task finds the row and adds nothing) and
sends each after commit through Django's e-mail backend, from a Celery task that claims the
row, retries with backoff and records the outcome (and an audit record once sent).
"""
import datetime
import hashlib
import logging
import smtplib

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from audit.services import AuditEvent, audit_record

from .models import Notification, NotificationEvent, NotificationStatus, Role, RoleAssignment

logger = logging.getLogger(__name__)

E = NotificationEvent
_LEASE = datetime.timedelta(minutes=2)
MAX_ATTEMPTS = 30

# --- who is told ---------------------------------------------------------------------------


def _holders(q):
    User = get_user_model()
    return list(User.objects.filter(is_active=True, role_assignments__in=RoleAssignment.objects.filter(q)).distinct())


def vertical_owners(integration, verticals=None):
    codes = verticals if verticals is not None else integration.vertical_codes()
    return _holders(Q(role=Role.VERTICAL_OWNER, tenant_id=integration.tenant_id, vertical__code__in=codes))


def umbrella_authority():
    return _holders(Q(role=Role.UMBRELLA_AUTHORITY))


def tenant_admins(tenant_id):
    return _holders(Q(role=Role.TENANT_ADMIN, tenant_id=tenant_id))


def partner_contacts(partner):
    """The partner's users, and its contact address when it has one."""
    people = _holders(Q(role=Role.PARTNER_USER, partner_id=partner.pk))
    return people + ([partner.contact_email] if partner.contact_email else [])


# --- what they are told ----------------------------------------------------------------------

# Transition actions that tell someone: action -> (event, recipients of the integration).
_ON_TRANSITION = {
    "submit": (E.REQUEST_SUBMITTED, lambda i: vertical_owners(i)),
    "review": (E.REVIEWS_COMPLETE, lambda i: umbrella_authority()),
    "approve": (E.APPROVED, lambda i: tenant_admins(i.tenant_id)),
    "activate": (E.ACTIVATED, lambda i: partner_contacts(i.partner)),
    "restrict": (E.RESTRICTED, lambda i: partner_contacts(i.partner)),
    "suspend": (E.SUSPENDED, lambda i: partner_contacts(i.partner)),
    "deprecate": (E.DEPRECATED, lambda i: partner_contacts(i.partner)),
}

_SUBJECTS = {
    E.REQUEST_SUBMITTED: "Review requested: {name} ({tenant})",
    E.REVIEWS_COMPLETE: "Sign-off requested: {name} ({tenant}) has all its reviews",
    E.APPROVED: "Approved, ready to activate: {name} ({tenant})",
    E.ACTIVATED: "Your integration {name} ({tenant}) is active",
    E.RESTRICTED: "Your integration {name} ({tenant}) is restricted to reads",
    E.SUSPENDED: "Your integration {name} ({tenant}) is suspended",
    E.DEPRECATED: "Your integration {name} ({tenant}) is deprecated",
    E.EXPIRING: "{name} ({tenant}) ends in {days} days",
    E.ENDPOINT_DISABLED: "Webhook endpoint of {name} ({tenant}) disabled",
    E.CONNECTOR_FAILING: "Connector of {name} ({tenant}) is failing",
    E.RECERTIFICATION_DUE: "Recertification due: {name} ({tenant})",
    E.RECERTIFICATION_LAPSED: "Recertification lapsed: {name} ({tenant}), {stage}",
    E.CREDENTIAL_AGED: "Credential of {name} ({tenant}) is past its maximum age",
}


def integration_url(integration):
    return settings.SCP_PORTAL_URL.rstrip("/") + reverse("admin:registry_integration_change", args=[integration.pk])


def notify(event, *, integration, key, recipients, detail="", link=None, **subject_args):
    """Record `event` for each recipient (a user or an address) and send each after commit.

    `key` names the occurrence (for example the integration and the date it ends): with the
    recipient it makes the notification unique. Returns the notifications made now."""
    subject = _SUBJECTS[event].format(name=integration.integration_name, tenant=integration.tenant.code, **subject_args)
    subject = " ".join(subject.split())  # one line: a header never carries a line break
    body = "\n\n".join(part for part in (
        subject + ".",
        detail,
        f"Open it in the portal: {link or integration_url(integration)}",
        "You receive this because of your governance role in the SCP Integration Layer.",
    ) if part)
    made = []
    for recipient in recipients:
        user = None if isinstance(recipient, str) else recipient
        address = (recipient if user is None else user.email).strip()
        if not address:
            logger.warning("notification %s: %s has no e-mail address", event, user)
            continue
        full_key = f"{event}:{key}:{address.lower()}"
        if len(full_key) > 255:
            full_key = f"{event}:{hashlib.sha256(full_key.encode()).hexdigest()}"
        notification, created = Notification.objects.get_or_create(key=full_key, defaults={
            "event": event, "tenant_id": integration.tenant_id, "integration": integration, "user": user,
            "recipient": address, "subject": subject[:200], "body": body,
        })
        if created:
            made.append(notification)
    ids = [n.pk for n in made]
    if ids:
        transaction.on_commit(lambda: [send_notification_task.delay(pk) for pk in ids])
    return made


def integration_transitioned(integration, action, occurrence, reason=""):
    """Tell whoever must act next or whose access changed; `occurrence` names this transition."""
    if action not in _ON_TRANSITION:
        return []
    event, recipients = _ON_TRANSITION[action]
    detail = f"Reason: {reason}" if reason and reason != action else ""
    return notify(event, integration=integration, key=f"{integration.pk}:{occurrence}", recipients=recipients(integration),
                  detail=detail)


# --- sending ---------------------------------------------------------------------------------


def retry_delay(attempts):
    """After the n-th failed attempt: 5 s, 10 s, 20 s, ... at most an hour, so that MAX_ATTEMPTS
    spans an SMTP outage of about a day before a message is given up (and shown as failed)."""
    return datetime.timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 3600))


def _claim(notification_id, now):
    """Take the notification for one attempt: pending and due, or claimed by a sender that died."""
    return Notification.objects.filter(
        Q(status=NotificationStatus.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        | Q(status=NotificationStatus.SENDING, claimed_until__lt=now),
        pk=notification_id,
    ).update(status=NotificationStatus.SENDING, claimed_until=now + _LEASE, attempts=F("attempts") + 1)


def send(notification_id):
    """One attempt at sending; returns "sent", "skipped" (sent, being sent elsewhere, or not due),
    "retry" (the server refused or was unreachable: due again after `retry_delay`) or "failed"
    (given up after MAX_ATTEMPTS, or a message that can never be sent)."""
    now = timezone.now()
    if not _claim(notification_id, now):
        return "skipped"
    notification = Notification.objects.select_related("integration", "tenant").get(pk=notification_id)
    try:
        EmailMessage(
            subject=notification.subject, body=notification.body, to=[notification.recipient],
            headers={"Message-ID": f"<{hashlib.sha256(notification.key.encode()).hexdigest()[:40]}@scp-integration-layer>",
                     "X-SCP-Event": notification.event},
        ).send()
    except (smtplib.SMTPException, OSError) as exc:
        given_up = notification.attempts >= MAX_ATTEMPTS
        _record_failure(notification, exc, NotificationStatus.FAILED if given_up else NotificationStatus.PENDING,
                        next_attempt_at=None if given_up else now + retry_delay(notification.attempts))
        return "failed" if given_up else "retry"
    except Exception as exc:  # noqa: BLE001 -- a message that cannot be built (a bad header): never retried
        logger.exception("notification %s cannot be sent", notification_id)
        _record_failure(notification, exc, NotificationStatus.FAILED, next_attempt_at=None)
        return "failed"
    with transaction.atomic():
        Notification.objects.filter(pk=notification_id).update(
            status=NotificationStatus.SENT, sent_at=timezone.now(), claimed_until=None, next_attempt_at=None,
            last_error="")
        audit_record(
            event_type=AuditEvent.NOTIFICATION_SENT, tenant=notification.tenant, integration=notification.integration,
            actor="system", details={"event": notification.event, "recipient": notification.recipient,
                                     "notification": notification.pk},
        )
    return "sent"


def _record_failure(notification, exc, status, *, next_attempt_at):
    Notification.objects.filter(pk=notification.pk).update(
        status=status, claimed_until=None, next_attempt_at=next_attempt_at,
        last_error=f"{exc.__class__.__name__}: {exc}"[:300],
    )


@shared_task(bind=True, max_retries=MAX_ATTEMPTS)
def send_notification_task(self, notification_id):
    outcome = send(notification_id)
    if outcome == "retry" and not self.request.is_eager:
        # Celery brings it back when it is due; the sweep below picks up anything lost.
        attempts = Notification.objects.filter(pk=notification_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=retry_delay(attempts).total_seconds())
    return outcome


def pending(now=None):
    """Notifications to send again: pending for a minute (a lost task) or due again after a
    refusal, or claimed by a sender that died; oldest first."""
    now = now or timezone.now()
    return list(Notification.objects.filter(
        Q(status=NotificationStatus.PENDING, next_attempt_at__isnull=True, created_at__lte=now - datetime.timedelta(minutes=1))
        | Q(status=NotificationStatus.PENDING, next_attempt_at__lte=now)
        | Q(status=NotificationStatus.SENDING, claimed_until__lt=now)
    ).order_by("created_at").values_list("pk", flat=True)[:500])
