"""E-mail notifications (issue #14 item 2) over real SMTP: a real SMTP server (aiosmtpd) is
started by each test and Django's SMTP backend talks to it. Each event reaches exactly its
recipients, once, including when the sending task is retried."""
import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord
from exchange import webhooks
from exchange.connectors import connector_run
from exchange.models import Connector, ConnectorStatus, Delivery, DeliveryStatus, Subscription
from lifecycle import credentials, notifications, recertification, reminders
from lifecycle.models import Notification, NotificationEvent, NotificationStatus
from registry.models import Credential, Integration, IntegrationStatus
from scp_core.errors import ValidationFailedError
from scp_core.models import ConsentStatus

from .agreement_helpers import sign_agreement
from .conftest import make_person
from .exchange_helpers import activate
from .governance_helpers import new_draft, run_action
from .receiver import Receiver
from .smtp import SMTPServer
from .test_exports_and_connectors import _Partner
from .test_webhooks import _push, _subscribe
from .worker import Worker, purge_queue, wait_until, worker_env

S = IntegrationStatus
E = NotificationEvent
PARTNER_CONTACTS = ["integrations@acme-health.example", "partner-user@scp.example"]


@pytest.fixture
def smtp(settings):
    with SMTPServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", server.port, False
        yield server


def _send_pending():
    """What the after-commit tasks do (the test's transaction never commits): send each once."""
    pending = Notification.objects.filter(status=NotificationStatus.PENDING).order_by("pk").values_list("pk", flat=True)
    return [notifications.send(pk) for pk in pending]


def _told(smtp, subject_part):
    return sorted(m["To"] for m in smtp.messages if subject_part in m["Subject"])


@pytest.mark.django_db
def test_the_request_path_tells_each_next_actor_and_the_partner(smtp, staff, demo, keycloak_clients):
    integration = new_draft(staff, demo, name="told")
    keycloak_clients.append(integration.client_id_for_keycloak)
    sign_agreement(integration, staff["ke-admin"])  # no sign-off without one
    steps = [
        ("submit", "ke-admin", {}, "Review requested", ["ke-health-owner@scp.example"]),
        ("review", "ke-health-owner", {}, "Sign-off requested", ["umbrella@scp.example"]),
        ("approve", "umbrella", {}, "Approved, ready to activate", ["ke-admin@scp.example"]),
        ("activate", "ke-admin", {}, "is active", PARTNER_CONTACTS),
        ("restrict", "ke-admin", {"reason": "audit finding"}, "restricted to reads", PARTNER_CONTACTS),
        ("reinstate", "ke-admin", {}, None, []),
        ("suspend", "ke-admin", {"reason": "violation"}, "is suspended", PARTNER_CONTACTS),
        ("reinstate", "ke-admin", {}, None, []),
        ("deprecate", "ke-admin", {}, "is deprecated", PARTNER_CONTACTS),
    ]
    for action, actor, kwargs, subject, recipients in steps:
        before = len(smtp.messages)
        integration = run_action(action, integration, staff[actor], demo, **kwargs)
        assert set(_send_pending()) <= {"sent"}
        new = smtp.messages[before:]
        assert sorted(m["To"] for m in new) == sorted(recipients), action
        assert all(subject in m["Subject"] and "told (ke)" in m["Subject"] for m in new), action
    suspended = [m for m in smtp.messages if "is suspended" in m["Subject"]][0]
    assert "Reason: violation" in suspended.get_payload()
    assert f"/admin/registry/integration/{integration.pk}/change/" in suspended.get_payload()
    # every one recorded: a row per message, sent, and an audit record naming its recipient
    assert Notification.objects.filter(status=NotificationStatus.SENT).count() == len(smtp.messages)
    assert AuditRecord.objects.filter(event_type=AuditEvent.NOTIFICATION_SENT).count() == len(smtp.messages)


@pytest.mark.django_db
def test_thirty_and_seven_days_before_active_until_once_each(smtp, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="ending")
    now = timezone.now()
    ends = now + datetime.timedelta(days=25)
    Integration.objects.filter(pk=partner.integration.pk).update(active_until=ends)
    expected = sorted(PARTNER_CONTACTS + ["ke-admin@scp.example"])
    assert reminders.sweep(now) == 3
    assert reminders.sweep(now + datetime.timedelta(hours=1)) == 0  # a repeated sweep tells nobody again
    _send_pending()
    assert _told(smtp, "ends in 30 days") == expected
    assert reminders.sweep(now + datetime.timedelta(days=19)) == 3  # six days left
    assert reminders.sweep(now + datetime.timedelta(days=20)) == 0
    _send_pending()
    assert _told(smtp, "ends in 7 days") == expected
    assert len([m for m in smtp.messages if "ends in" in m["Subject"]]) == 6


@pytest.mark.django_db
def test_a_disabled_webhook_endpoint_is_told_to_the_partner(smtp, api, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="hooked")
    person = make_person(demo["ke"], "77700001", [(demo["health"], ConsentStatus.GRANTED)])
    with Receiver(statuses=[410]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        assert webhooks.deliver(Delivery.objects.get(subscription=subscription).pk) == DeliveryStatus.DEAD
    _send_pending()
    assert _told(smtp, "Webhook endpoint of hooked (ke) disabled") == PARTNER_CONTACTS
    body = smtp.messages[-1].get_payload()
    assert "410 Gone" in body and "not-logged" not in body  # never the endpoint's query string


@pytest.mark.django_db
def test_a_failing_connector_is_told_to_the_tenant_admins_when_it_starts_failing(smtp, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="pulled")
    person = make_person(demo["ke"], "77700002", [(demo["health"], ConsentStatus.GRANTED)])
    remote = _Partner()
    connector = Connector.objects.create(integration=partner.integration, name="clinic-pull", adapter="json_https",
                                         source=remote.url, vertical=demo["health"], record_type="immunization")
    remote.records = [{"external_id": "imm-1", "person_id": str(person.pk), "vaccine": "BCG", "dose": "two", "date": "x"}]
    for _ in range(2):  # failing twice is one failure to tell
        connector.refresh_from_db()
        assert connector_run(connector) == ConnectorStatus.FAILING
    remote.server.shutdown()
    _send_pending()
    assert _told(smtp, "Connector of pulled (ke) is failing") == ["ke-admin@scp.example"]
    assert "clinic-pull" in smtp.messages[-1].get_payload()


@pytest.mark.django_db
def test_a_due_recertification_is_told_to_its_vertical_owner(smtp, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="recert")
    review = partner.integration.vertical_reviews.get()
    review.decided_at = timezone.now() - datetime.timedelta(days=181)
    review.save()
    assert recertification.sweep(timezone.now())["opened"] == 1
    _send_pending()
    assert _told(smtp, "Recertification due: recert (ke)") == ["ke-health-owner@scp.example"]


@pytest.mark.django_db
def test_a_credential_past_its_maximum_age_is_told_to_its_owners_once(smtp, staff, demo, keycloak_clients, settings):
    settings.SCP_CREDENTIAL_MAX_AGE_DAYS = 90
    partner = activate(staff, demo, keycloak_clients, name="old secret")
    Credential.objects.filter(integration=partner.integration).update(issued_at=timezone.now() - datetime.timedelta(days=91))
    credentials.sweep(timezone.now())
    credentials.sweep(timezone.now() + datetime.timedelta(days=1))  # a later sweep tells nobody again
    _send_pending()
    assert _told(smtp, "Credential of old secret (ke) is past its maximum age") == sorted(
        PARTNER_CONTACTS + ["ke-admin@scp.example"])


@pytest.mark.django_db
def test_a_retried_send_delivers_exactly_one_message(settings, staff, demo):
    with SMTPServer(refuse_first=1) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        run_action("submit", new_draft(staff, demo, name="once"), staff["ke-admin"], demo)
        told = Notification.objects.get(event=E.REQUEST_SUBMITTED)
        assert notifications.send(told.pk) == "retry"  # 451 from the server
        told.refresh_from_db()
        assert (told.status, told.attempts) == (NotificationStatus.PENDING, 1) and "451" in told.last_error
        Notification.objects.filter(pk=told.pk).update(next_attempt_at=timezone.now())  # its backoff has passed
        assert notifications.send_notification_task.apply(args=[told.pk]).get() == "sent"
        # the task again (a broker redelivery, a retry racing the sweep): nothing more is sent
        assert notifications.send_notification_task.apply(args=[told.pk]).get() == "skipped"
        assert notifications.send(told.pk) == "skipped"
        assert len(server.messages) == 1 and server.refused == 1
        assert server.messages[0]["Message-ID"].endswith("@scp-integration-layer>")


@pytest.mark.django_db(transaction=True)
def test_the_worker_sends_after_commit_and_celery_retries_a_refused_message(tmp_path, staff, demo, keycloak_clients):
    """The whole path on the real services: the change commits, its task goes through Redis to a
    real worker, the SMTP server refuses the first attempt, Celery retries, one message arrives."""
    with SMTPServer(refuse_first=1) as server:
        env = worker_env(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port)
        purge_queue(env)
        worker = Worker(env, tmp_path, "mailer", beat=False)
        try:
            draft = new_draft(staff, demo, name="committed")
            with transaction.atomic():
                run_action("submit", draft, staff["ke-admin"], demo)
            wait_until(lambda: len(server.messages) == 1, 90, "the notification e-mail")
            told = Notification.objects.get(event=E.REQUEST_SUBMITTED)
            wait_until(lambda: Notification.objects.get(pk=told.pk).status == NotificationStatus.SENT, 30, "sent recorded")
        finally:
            worker.stop()
        told.refresh_from_db()
        assert told.attempts == 2 and server.refused == 1
        assert [m["To"] for m in server.messages] == ["ke-health-owner@scp.example"]


@pytest.mark.django_db
def test_a_refused_message_waits_for_its_backoff_and_an_unsendable_one_does_not_stop_the_others(settings, staff, demo):
    with SMTPServer(refuse_first=1) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        integration = new_draft(staff, demo, name="backoff")
        run_action("submit", integration, staff["ke-admin"], demo)
        told = Notification.objects.get(event=E.REQUEST_SUBMITTED)
        broken = Notification.objects.create(
            key="broken", event=E.APPROVED, integration=integration, tenant=demo["ke"], recipient="x@scp.example",
            subject="line\nBcc: someone@else.example", body="-", created_at=timezone.now() - datetime.timedelta(hours=1))
        now = timezone.now()
        assert notifications.send(told.pk) == "retry"
        told.refresh_from_db()
        assert told.next_attempt_at > now
        assert notifications.send(told.pk) == "skipped"  # not before its backoff, not even by the sweep
        assert told.pk not in notifications.pending(told.next_attempt_at - datetime.timedelta(seconds=1))
        later = told.next_attempt_at + datetime.timedelta(seconds=1)
        assert notifications.pending(later) == [broken.pk, told.pk]  # oldest first
        Notification.objects.filter(pk=told.pk).update(next_attempt_at=timezone.now())
        assert [notifications.send(pk) for pk in notifications.pending(timezone.now() + datetime.timedelta(minutes=2))] == [
            "failed", "sent"]
        broken.refresh_from_db()
        assert broken.status == NotificationStatus.FAILED and "BadHeaderError" in broken.last_error
        assert [m["To"] for m in server.messages] == ["ke-health-owner@scp.example"]


@pytest.mark.django_db
def test_an_endpoint_disabled_is_told_once_and_never_with_its_credentials(smtp, api, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="hooked twice")
    person = make_person(demo["ke"], "77700003", [(demo["health"], ConsentStatus.GRANTED)])
    with Receiver(statuses=[410]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url.replace("http://", "http://hookuser:S3CRETPW@"))
        _push(api, partner, person)
        webhooks.deliver(Delivery.objects.get(subscription=subscription).pk)
    # A second failure recorded for an endpoint already disabled (deliveries in flight together)
    webhooks._disable(Subscription.objects.get(pk=subscription.pk), "the endpoint answered 410 Gone")
    _send_pending()
    disabled = [m for m in smtp.messages if "disabled" in m["Subject"]]
    assert sorted(m["To"] for m in disabled) == PARTNER_CONTACTS
    assert all("S3CRETPW" not in m.get_payload() and "hookuser" not in m.get_payload() for m in disabled)
    assert "hookuser" not in str(subscription)


@pytest.mark.django_db
def test_an_integration_name_is_one_printable_line(staff, demo):
    with pytest.raises(ValidationFailedError):
        new_draft(staff, demo, name="evil\nBcc: attacker@example.org")
