"""Events and webhooks (issue #6): signed per Standard Webhooks, retried on the documented
schedule (the clock controlled by the test, never by sleeping), consent re-checked at
delivery, dead letters, endpoint disabling, and the pull feed."""
import datetime
import threading
import time
import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord, Incident, IncidentKind
from exchange import webhooks
from exchange.batch import import_store, run_import
from exchange.connectors import connector_run
from exchange.deliveries import delivery_replay
from exchange.models import Connector, Delivery, DeliveryAttempt, DeliveryStatus, Event, Subscription
from exchange.tasks import deliver_webhook_task, deliver_webhooks_task
from lifecycle.consent import consent_record
from scp_core.models import ConsentStatus
from scp_portal.celery import app

from .conftest import make_person
from .exchange_helpers import activate
from .receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(api, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="webhooks")
    person = make_person(demo["ke"], "66600000", [(demo["health"], ConsentStatus.GRANTED)])
    return partner, person


def _subscribe(api, partner, url, types=("record.created",)):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    response = api.post("/api/v1/subscriptions/", {"url": url, "event_types": list(types)}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["secret"].startswith("whsec_")
    return Subscription.objects.get(pk=response.json()["id"]), response.json()["secret"]


def _push(api, partner, person):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    response = api.post("/api/v1/records/", {"person_id": str(person.pk), "vertical": "health", "record_type": "immunization",
                                             "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_retries_follow_the_schedule_and_every_delivery_verifies(api, setup):
    partner, person = setup
    with Receiver(statuses=[503, 500]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        record = _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        t0 = timezone.now()
        assert webhooks.deliver(delivery.pk, now=t0) == DeliveryStatus.PENDING
        delivery.refresh_from_db()
        first_gap = delivery.next_attempt_at - t0
        assert datetime.timedelta(seconds=4.5) <= first_gap <= datetime.timedelta(seconds=5.5)
        assert webhooks.deliver(delivery.pk, now=t0 + datetime.timedelta(seconds=1)) is None  # not due yet
        t1 = delivery.next_attempt_at
        assert webhooks.deliver(delivery.pk, now=t1) == DeliveryStatus.PENDING
        delivery.refresh_from_db()
        second_gap = delivery.next_attempt_at - t1
        assert datetime.timedelta(minutes=4.5) <= second_gap <= datetime.timedelta(minutes=5.5)
        assert webhooks.deliver(delivery.pk, now=delivery.next_attempt_at) == DeliveryStatus.DELIVERED
    assert len(receiver.received) == 3
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1  # stable across retries
    payload = receiver.received[-1][1]
    assert payload["type"] == "record.created" and payload["data"]["record_id"] == record["id"]
    assert set(payload) == {"type", "timestamp", "data"}
    assert list(delivery.attempt_log.order_by("number").values_list("status_code", flat=True)) == [503, 500, 200]


def test_retry_after_is_honoured_and_4xx_is_not_retried(api, setup, staff):
    partner, person = setup
    with Receiver(statuses=[429], retry_after=900) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        t0 = timezone.now()
        webhooks.deliver(delivery.pk, now=t0)
        delivery.refresh_from_db()
        assert delivery.next_attempt_at - t0 >= datetime.timedelta(seconds=900)
    with Receiver(statuses=[400]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        assert webhooks.deliver(delivery.pk) == DeliveryStatus.DEAD  # a dead letter, replayable
        delivery_replay(delivery=delivery, actor=staff["partner-user"])  # the partner fixed its endpoint
        assert webhooks.deliver(delivery.pk) == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("retry_after", [10**15, "\u00b2"])  # past any date arithmetic; a digit to isdigit, not to int
def test_a_receivers_retry_after_cannot_break_or_park_the_delivery(api, setup, retry_after):
    partner, person = setup
    with Receiver(statuses=[503], retry_after=retry_after) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        t0 = timezone.now()
        assert webhooks.deliver(delivery.pk, now=t0) == DeliveryStatus.PENDING  # recorded, retried later
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.attempt_log.get().status_code == 503
    wait = delivery.next_attempt_at - t0
    if isinstance(retry_after, int):  # honoured up to the schedule's longest wait
        assert wait == datetime.timedelta(seconds=webhooks.MAX_RETRY_AFTER)
    else:  # not a number of seconds: the schedule's first step (5 s, jittered)
        assert datetime.timedelta(seconds=4) <= wait <= datetime.timedelta(seconds=6)


def test_a_receivers_huge_answer_is_not_read_into_the_worker(api, setup):
    partner, person = setup
    with Receiver(answer_bytes=50 * 1024 * 1024) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        tracemalloc.start()
        try:
            assert webhooks.deliver(delivery.pk) == DeliveryStatus.DELIVERED
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, peak  # a 50 MB answer, read no further than MAX_ANSWER_BYTES


def test_410_disables_the_endpoint_with_an_incident(api, setup):
    partner, person = setup
    with Receiver(statuses=[410]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        assert webhooks.deliver(Delivery.objects.get(subscription=subscription).pk) == DeliveryStatus.DEAD
    subscription.refresh_from_db()
    assert not subscription.active and "410" in subscription.disabled_reason
    assert Incident.objects.filter(kind=IncidentKind.DELIVERY_FAILING, integration=partner.integration).exists()


def test_consent_withdrawn_between_event_and_delivery_sends_nothing_about_the_person(api, setup, staff, demo):
    partner, person = setup
    with Receiver() as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
        delivery = Delivery.objects.get(subscription=subscription)
        assert webhooks.deliver(delivery.pk) == DeliveryStatus.SKIPPED
    assert receiver.received == []


def test_subscriptions_refuse_private_and_plain_http_targets(api, setup, settings):
    partner, _ = setup
    settings.SCP_WEBHOOK_ALLOW_LOOPBACK = False
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    for url in ("http://example.org/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook"):
        response = api.post("/api/v1/subscriptions/", {"url": url, "event_types": ["record.created"]}, format="json")
        assert response.status_code == 422 and response.json()["code"] == "validation_error", url
    response = api.post("/api/v1/subscriptions/", {"url": "https://8.8.8.8/h", "event_types": ["nope"]}, format="json")
    assert response.status_code == 422


def test_pull_feed_returns_the_webhook_body_under_current_consent(api, setup, staff, demo):
    partner, person = setup
    other = make_person(demo["ke"], "66600001", [(demo["health"], ConsentStatus.GRANTED)])
    _push(api, partner, person)
    _push(api, partner, other)
    assert api.get(f"/api/v1/persons/{other.pk}/?vertical=health").status_code == 200  # it received them
    consent_record(person=other, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    feed = api.get("/api/v1/events/?cursor=0").json()
    kinds = [(e["type"], e["data"].get("person_id")) for e in feed["events"]]
    assert ("record.created", str(person.pk)) in kinds
    assert ("record.created", str(other.pk)) not in kinds  # consent gone: nothing about them
    assert ("consent.withdrawn", str(other.pk)) in kinds  # announced, with the id only
    assert all(set(e) == {"id", "type", "timestamp", "data"} for e in feed["events"])
    again = api.get(f"/api/v1/events/?cursor={feed['next_cursor']}").json()
    assert again["events"] == []


def test_secret_rotation_signs_with_the_new_secret_only(api, setup):
    partner, person = setup
    with Receiver() as receiver:
        subscription, old = _subscribe(api, partner, receiver.url)
        response = api.post(f"/api/v1/subscriptions/{subscription.pk}/rotate-secret/")
        assert response.status_code == 200
        new = response.json()["secret"]
        assert new != old and new.startswith("whsec_")
        receiver.secret = new  # the receiver verifies with the new secret only
        _push(api, partner, person)
        assert webhooks.deliver(Delivery.objects.get(subscription=subscription).pk) == DeliveryStatus.DELIVERED
    assert len(receiver.received) == 1
    listed = api.get("/api/v1/subscriptions/").json()
    assert all("secret" not in s for s in listed)


def test_an_import_of_1000_rows_is_announced_by_chunk_events_delivered_signed(api, setup, staff, demo, tmp_path, settings):
    """Bulk arrivals emit events as pushes do: one `records.imported` per chunk of the file
    (at most ceil(rows / 2,000) per file), each signed; a person who withdrew before the
    delivery is left out of what is delivered."""
    settings.SCP_IMPORT_DIR = str(tmp_path)
    partner, _person = setup
    persons = [make_person(demo["ke"], f"BULK-{i}", [(demo["health"], ConsentStatus.GRANTED)]) for i in range(10)]
    rows = "".join(f"{persons[i % 10].pk},BCG,{i + 1},2026-01-02\n" for i in range(1000))
    with Receiver() as receiver:
        _subscription, receiver.secret = _subscribe(api, partner, receiver.url, types=("records.imported",))
        upload = SimpleUploadedFile("rows.csv", f"person_id,vaccine,dose,date\n{rows}".encode())
        job = import_store(integration=partner.refresh(), vertical=demo["health"], record_type="immunization", upload=upload)
        assert run_import(job.pk) == "completed"
        events = Event.objects.filter(event_type="records.imported")
        assert events.count() == 1 and len(events.get().data["records"]) == 1000
        consent_record(person=persons[0], vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
        assert webhooks.deliver(Delivery.objects.get(event=events.get()).pk) == DeliveryStatus.DELIVERED
    (_headers, payload), = receiver.received  # verified with the subscription's secret
    delivered = payload["data"]["records"]
    assert len(delivered) == 900 and str(persons[0].pk) not in {r["person_id"] for r in delivered}
    assert payload["type"] == "records.imported" and payload["data"]["import_job"] == str(job.pk)


def test_a_connector_announces_new_rows_as_created_and_changed_rows_as_updated(setup, demo, tmp_path):
    partner, person = setup
    source = tmp_path / "feed.csv"
    connector = Connector.objects.create(integration=partner.integration, name="feed", adapter="csv_file",
                                         source=str(source), vertical=demo["health"], record_type="immunization")
    source.write_text(f"external_id,person_id,vaccine,dose,date\ne1,{person.pk},BCG,1,2026-01-02\n")
    connector_run(connector)
    connector_run(Connector.objects.get(pk=connector.pk))  # unchanged: nothing announced again
    source.write_text(f"external_id,person_id,vaccine,dose,date\ne1,{person.pk},BCG,2,2026-01-02\n")
    connector_run(Connector.objects.get(pk=connector.pk))
    assert list(Event.objects.filter(event_type__startswith="record.").order_by("id").values_list("event_type", flat=True)) \
        == ["record.created", "record.updated"]


@pytest.mark.django_db(transaction=True)
def test_many_deliveries_are_in_flight_at_once_and_no_row_is_locked_while_they_wait(api, setup):
    """Issue #12 item 4: a worker has many deliveries in flight; while their POSTs wait on the
    receiver no delivery row is locked (each was claimed by a short UPDATE), another sweep does
    not take them again, and each ends recorded with its one attempt and audit record."""
    partner, person = setup
    results = []
    with Receiver(hold=True) as receiver:
        subscription, secret = _subscribe(api, partner, receiver.url)
        receiver.secret = secret
        for _ in range(6):
            _push(api, partner, person)
        ids = list(Delivery.objects.filter(subscription=subscription).values_list("pk", flat=True))
        runner = threading.Thread(target=_in_thread(lambda: results.extend(webhooks.deliver_many(ids, concurrency=6))))
        runner.start()
        deadline = time.monotonic() + 20
        while len(receiver.waiting) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.waiting) == 6  # all six POSTs are waiting on the receiver together
        with transaction.atomic():  # nothing holds their rows: taken at once, no waiting
            assert len(Delivery.objects.select_for_update(nowait=True).filter(pk__in=ids)) == 6
        assert all(webhooks.deliver(pk) is None for pk in ids)  # claimed: no second attempt
        receiver.release()
        runner.join(30)
    assert results == [DeliveryStatus.DELIVERED] * 6
    assert all(d.attempts == 1 and d.claimed_until is None for d in Delivery.objects.filter(pk__in=ids))
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 6
    assert AuditRecord.objects.filter(event_type=AuditEvent.WEBHOOK_ATTEMPT, details__delivery__in=[str(i) for i in ids]).count() == 6


def _in_thread(work):
    """`work` for a thread of its own: its database connection closed when it ends."""
    def run():
        try:
            work()
        finally:
            connection.close()
    return run


def _attempt_audits(ids):
    return AuditRecord.objects.filter(event_type=AuditEvent.WEBHOOK_ATTEMPT, details__delivery__in=[str(i) for i in ids])


def test_a_batch_is_claimed_at_once_and_each_delivery_sent_signed_and_recorded(api, setup, staff, demo):
    """deliver_webhooks_task: several deliveries claimed by one statement and sent concurrently;
    each is signed, and has its attempt row, audit record and disclosure; consent is checked
    per delivery (a withdrawn person's delivery in the same batch is skipped)."""
    partner, person = setup
    other = make_person(demo["ke"], "66600002", [(demo["health"], ConsentStatus.GRANTED)])
    with Receiver() as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        for someone in (person, person, other, person):
            _push(api, partner, someone)
        consent_record(person=other, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
        ids = [str(pk) for pk in Delivery.objects.filter(subscription=subscription).order_by("event_id").values_list("pk", flat=True)]
        assert deliver_webhooks_task(ids) == 4
    statuses = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[Delivery._meta.pk.to_python(i)] for i in ids] == [DeliveryStatus.DELIVERED] * 2 + [DeliveryStatus.SKIPPED, DeliveryStatus.DELIVERED]
    assert sorted(h["webhook-id"] for h, _ in receiver.received) == sorted(ids[:2] + ids[3:])  # each verified
    assert {p["data"]["person_id"] for _, p in receiver.received} == {str(person.pk)}
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 3
    audits = _attempt_audits(ids)
    assert audits.count() == 4 and audits.filter(result="denied").count() == 1
    assert all(a.disclosures.count() == 1 for a in audits.filter(result="success"))
    assert not Delivery.objects.filter(pk__in=ids, claimed_until__isnull=False).exists()


def test_a_withdrawal_between_claim_and_send_sends_nothing_about_the_person(api, setup, staff, demo):
    """Consent is checked after the claim, at send time: a withdrawal that lands after the
    delivery was claimed still blocks it."""
    partner, person = setup
    with Receiver() as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        now = timezone.now()
        leases = webhooks._claim([str(delivery.pk)], now)
        assert list(leases) == [str(delivery.pk)]
        consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
        assert webhooks._deliver_claimed(leases, now) == {str(delivery.pk): DeliveryStatus.SKIPPED}
    assert receiver.received == []
    assert _attempt_audits([delivery.pk]).get().result == "denied"


def test_a_withdrawal_during_a_batch_blocks_its_next_wave(api, setup, staff, demo, monkeypatch):
    """A batch goes in waves of SCP_WEBHOOK_CONCURRENCY, each claimed and consent-checked just
    before its POSTs: a withdrawal while one wave is out blocks every later delivery about the
    person (a check made once for the whole batch would have cleared them all)."""
    partner, person = setup
    with Receiver() as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        for _ in range(4):
            _push(api, partner, person)
        ids = [str(pk) for pk in Delivery.objects.filter(subscription=subscription).order_by("event_id").values_list("pk", flat=True)]
        send_wave, waves = webhooks._deliver_claimed, []

        def then_withdraw(leases, now, **options):
            waves.append(len(leases))
            statuses = send_wave(leases, now, **options)
            if len(waves) == 1:  # the person withdraws while the batch is under way
                consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
            return statuses

        monkeypatch.setattr(webhooks, "_deliver_claimed", then_withdraw)
        statuses = webhooks.deliver_batch(ids, concurrency=2)
    assert waves == [2, 2]
    assert statuses == [DeliveryStatus.DELIVERED] * 2 + [DeliveryStatus.SKIPPED] * 2
    assert sorted(h["webhook-id"] for h, _ in receiver.received) == sorted(ids[:2])


def test_a_withdrawal_after_a_failed_attempt_blocks_the_retry(api, setup, staff, demo):
    partner, person = setup
    with Receiver(statuses=[503]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        assert webhooks.deliver_many([delivery.pk]) == [DeliveryStatus.PENDING]
        consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
        later = timezone.now() + datetime.timedelta(minutes=1)
        assert webhooks.deliver_batch([delivery.pk], now=later) == [DeliveryStatus.SKIPPED]
    assert len(receiver.received) == 1  # the first attempt only


def test_a_redelivered_task_sends_nothing_twice(api, setup):
    """Celery may run a task again (acks_late, a lost worker): the claim decides, so the same
    delivery task or batch task run twice sends and records each delivery once."""
    partner, person = setup
    with Receiver() as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        for _ in range(3):
            _push(api, partner, person)
        ids = [str(pk) for pk in Delivery.objects.filter(subscription=subscription).values_list("pk", flat=True)]
        assert deliver_webhook_task(ids[0]) == DeliveryStatus.DELIVERED
        assert deliver_webhook_task(ids[0]) is None  # the same task again
        assert deliver_webhooks_task(ids) == 2  # a batch holding it too: the other two only
        assert deliver_webhooks_task(ids) == 0  # and that batch again
    assert sorted(h["webhook-id"] for h, _ in receiver.received) == sorted(ids)
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 3
    assert _attempt_audits(ids).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_task_redelivered_while_the_first_is_in_flight_sends_nothing(api, setup):
    partner, person = setup
    first = []
    with Receiver(hold=True) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        for _ in range(2):
            _push(api, partner, person)
        ids = [str(pk) for pk in Delivery.objects.filter(subscription=subscription).values_list("pk", flat=True)]
        runner = threading.Thread(target=_in_thread(lambda: first.append(deliver_webhooks_task(ids))))
        runner.start()
        deadline = time.monotonic() + 20
        while len(receiver.waiting) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.waiting) == 2
        assert deliver_webhooks_task(ids) == 0  # redelivered while the first waits on the receiver
        receiver.release()
        runner.join(30)
    assert first == [2] and len(receiver.received) == 2
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 2


def test_an_attempt_whose_lease_ran_out_is_recorded_and_leaves_the_outcome_to_the_new_one(api, setup):
    partner, person = setup
    with Receiver() as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        _push(api, partner, person)
        delivery = Delivery.objects.get(subscription=subscription)
        now = timezone.now()
        stale = webhooks._claim([str(delivery.pk)], now)
        # The first attempt stalls past its lease; another takes the delivery over and delivers it
        Delivery.objects.filter(pk=delivery.pk).update(claimed_until=now - datetime.timedelta(seconds=1))
        assert webhooks.deliver(delivery.pk) == DeliveryStatus.DELIVERED
        # When the stalled one finally sends, it records its attempt but decides nothing
        assert webhooks._deliver_claimed(stale, now) == {str(delivery.pk): None}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2
    assert sorted(delivery.attempt_log.values_list("number", flat=True)) == [1, 2]
    assert _attempt_audits([delivery.pk]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_success_neither_waits_for_nor_writes_the_subscription_unless_its_failure_counters_are_set(api, setup):
    """Deliveries to one endpoint do not queue on its row: while another transaction holds the
    subscription's row lock, a successful delivery is recorded without waiting for it; once
    failures were counted, the next success clears them."""
    partner, person = setup
    held, release, done = threading.Event(), threading.Event(), []

    def hold_subscription_row():
        with transaction.atomic():
            Subscription.objects.select_for_update().get(pk=subscription.pk)
            held.set()
            release.wait(30)

    with Receiver(statuses=[503]) as receiver:
        subscription, receiver.secret = _subscribe(api, partner, receiver.url)
        for _ in range(3):
            _push(api, partner, person)
        first, second, third = Delivery.objects.filter(subscription=subscription).order_by("event_id")
        assert webhooks.deliver(first.pk) == DeliveryStatus.PENDING  # 503: counted
        subscription.refresh_from_db()
        assert subscription.consecutive_failures == 1
        assert webhooks.deliver(second.pk) == DeliveryStatus.DELIVERED  # clears the count
        subscription.refresh_from_db()
        assert subscription.consecutive_failures == 0
        holder = threading.Thread(target=_in_thread(hold_subscription_row))
        holder.start()
        try:
            assert held.wait(10)
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")  # waiting for the row would fail the delivery
            try:
                done.append(webhooks.deliver(third.pk))
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("SET lock_timeout = 0")
        finally:
            release.set()
            holder.join(30)
    assert done == [DeliveryStatus.DELIVERED]


def test_an_event_for_several_subscriptions_is_one_batch_task(api, setup, django_capture_on_commit_callbacks):
    """An event's fan-out is queued as one deliver_webhooks_task: each subscription gets its own
    signed delivery, from one claim."""
    partner, person = setup
    sent = []
    with Receiver() as first, Receiver() as second:
        one, first.secret = _subscribe(api, partner, first.url)
        two, second.secret = _subscribe(api, partner, second.url)
        eager = app.conf.task_always_eager
        app.conf.task_always_eager = True  # the task runs here, at commit, as a worker would run it
        original = deliver_webhooks_task.run
        deliver_webhooks_task.run = lambda ids: sent.append(list(ids)) or original(ids)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                _push(api, partner, person)
        finally:
            app.conf.task_always_eager = eager
            deliver_webhooks_task.run = original
    ids = {str(d.pk) for d in Delivery.objects.filter(subscription__in=[one, two])}
    assert len(sent) == 1 and set(sent[0]) == ids and len(ids) == 2
    assert len(first.received) == 1 and len(second.received) == 1
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
