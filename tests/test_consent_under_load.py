"""§4.3 / §10: consent withdrawn while a partner polls in a loop. No response produced after
the withdrawal took effect contains the person: not in lists, single reads or aggregates."""
import threading
import time

import pytest
import requests
from django.utils import timezone

from scp_core.models import ConsentStatus, Person
from lifecycle.consent import consent_record

from .conftest import make_person
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db(transaction=True)
POLL_SECONDS = 4


def test_no_response_after_withdrawal_contains_the_person(live_server, staff, demo, keycloak_clients, settings):
    settings.SCP_AGGREGATE_MIN_CELL = 1
    target = make_person(demo["ke"], "55500000", [(demo["health"], ConsentStatus.GRANTED)])
    for i in range(4):
        make_person(demo["ke"], f"5550000{i + 1}", [(demo["health"], ConsentStatus.GRANTED)])
    partner = activate(staff, demo, keycloak_clients, name="poller")
    base = f"{live_server.url}/api/v1"
    headers = {"Authorization": f"Bearer {partner.token}"}
    observations, stop = [], threading.Event()

    def poll():
        session = requests.Session()
        kinds = [
            ("list", f"{base}/persons/?vertical=health",
             lambda r: str(target.pk) in {p["id"] for p in r.json()["results"]}),
            ("detail", f"{base}/persons/{target.pk}/?vertical=health", lambda r: r.status_code == 200),
            ("aggregate", f"{base}/aggregates/?vertical=health", lambda r: r.json()["total"] == 5),
        ]
        deadline = time.monotonic() + POLL_SECONDS * 3
        while not stop.is_set() and time.monotonic() < deadline:
            for kind, url, shows_target in kinds:
                sent = timezone.now()
                response = session.get(url, headers=headers, timeout=10)
                assert response.status_code in (200, 403), response.text
                observations.append((kind, sent, shows_target(response)))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(POLL_SECONDS / 2)
    consent_record(person=target, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
    # A change dated "now" is in effect from its commit, which has happened when the service returns.
    effective = timezone.now()
    time.sleep(POLL_SECONDS / 2)
    stop.set()
    poller.join(timeout=30)

    before = [o for o in observations if o[1] < effective]
    after = [o for o in observations if o[1] >= effective]
    assert before and after, "the poller must have run on both sides of the withdrawal"
    assert any(shows for _, _, shows in before), "before the withdrawal the person is visible"
    leaks = [(kind, sent) for kind, sent, shows in after if shows]
    assert leaks == [], f"responses after the withdrawal still showed the person: {leaks[:5]}"
    assert {kind for kind, _, _ in after} == {"list", "detail", "aggregate"}
    assert Person.objects.filter(pk=target.pk).exists()
