"""Redis stopped and restarted while webhooks are being delivered by a real Celery worker:
no event is lost (the outbox holds them) and none is delivered twice with different ids."""
import subprocess
from collections import defaultdict
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from exchange.models import Delivery, DeliveryStatus
from scp_core.models import ConsentStatus
from lifecycle.consent import consent_record

from .conftest import make_person
from .exchange_helpers import activate
from .receiver import Receiver
from .worker import Worker, purge_queue, wait_until, worker_env

pytestmark = pytest.mark.django_db(transaction=True)
REDIS_PORT = str(urlsplit(settings.CELERY_BROKER_URL).port or 6379)


def _redis_up():
    return subprocess.run(["redis-cli", "-p", REDIS_PORT, "ping"], capture_output=True, text=True).stdout.strip() == "PONG"


def _stop_redis():
    """Shut the broker down, whoever started it, and make sure it is really gone."""
    subprocess.run(["redis-cli", "-p", REDIS_PORT, "shutdown", "nosave"], capture_output=True, timeout=30)
    wait_until(lambda: not _redis_up(), 30, "Redis to stop")


def _start_redis():
    subprocess.run(["bash", str(settings.BASE_DIR / "scripts" / "redis.sh")], check=True, capture_output=True, timeout=60)
    wait_until(_redis_up, 30, "Redis to come back")


def _consenting_persons(demo, prefix, n):
    return [make_person(demo["ke"], f"{prefix}{i:04d}", [(demo["health"], ConsentStatus.GRANTED)]) for i in range(n)]


def _subscribe_to_withdrawals(api, partner, receiver):
    """The partner's subscription to consent.withdrawn at `receiver`, whose signatures it checks.
    It has read the persons first: a withdrawal is told only to those who received the person."""
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    assert api.get("/api/v1/persons/?vertical=health&page_size=500").status_code == 200
    response = api.post("/api/v1/subscriptions/", {"url": receiver.url, "event_types": ["consent.withdrawn"]}, format="json")
    receiver.secret = response.json()["secret"]


def test_broker_outage_loses_no_event_and_duplicates_none(api, staff, demo, keycloak_clients, tmp_path):
    partner = activate(staff, demo, keycloak_clients, name="outage")
    persons = _consenting_persons(demo, "3300", 6)
    env = worker_env()
    purge_queue(env)
    with Receiver() as receiver:
        _subscribe_to_withdrawals(api, partner, receiver)
        worker = Worker(env, tmp_path)
        try:
            for person in persons[:3]:
                consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
            wait_until(lambda: len(receiver.received) >= 1, 60, "the first deliveries")
            _stop_redis()
            try:
                for person in persons[3:]:  # the broker is gone: the outbox must keep these
                    consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
                assert not _redis_up()
                assert Delivery.objects.filter(status=DeliveryStatus.PENDING).count() >= 3
            finally:
                _start_redis()
            wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 6, 120, "every delivery")
        finally:
            worker.stop()
    ids_per_person = defaultdict(set)
    for headers, payload in receiver.received:
        ids_per_person[payload["data"]["person_id"]].add(headers["webhook-id"])
    assert set(ids_per_person) == {str(p.pk) for p in persons}  # none lost
    assert all(len(ids) == 1 for ids in ids_per_person.values())  # never twice with different ids


def test_a_worker_whose_database_connection_was_dropped_recovers_at_its_next_task(api, staff, demo, keycloak_clients,
                                                                                 tmp_path):
    partner = activate(staff, demo, keycloak_clients, name="db-drop")
    persons = _consenting_persons(demo, "3400", 2)
    env = worker_env()
    purge_queue(env)
    with Receiver() as receiver:
        _subscribe_to_withdrawals(api, partner, receiver)
        worker = Worker(env, tmp_path, beat=False)  # no sweepers: the worker is idle between our two tasks
        try:
            consent_record(person=persons[0], vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
            wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 1, 60, "the first delivery")
            wait_until(lambda: "succeeded" in worker.log.read_text(), 10, "the first task to end")
            # When PostgreSQL drops the worker's (kept) connection, as on a server restart
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                assert cursor.fetchone()[0] >= 1
            consent_record(person=persons[1], vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
            # Then the very next task reconnects and delivers (no sweeper runs to try again)
            wait_until(lambda: len(receiver.received) == 2, 20, "the delivery after the dropped connection")
        finally:
            worker.stop()
    assert "OperationalError" not in worker.log.read_text()
