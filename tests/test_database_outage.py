"""Issue #15 §8: a PostgreSQL outage answers like the other outages, 503 `upstream_unavailable`
with `Retry-After`, never a 500; once the database is back, requests are served again.
PostgreSQL itself is stopped and started (its Debian cluster on the test port)."""
import collections
import subprocess
import threading
import time

import pytest
import requests
from django.db import connection

from .exchange_helpers import activate

pytestmark = pytest.mark.django_db(transaction=True)


def _cluster():
    port = str(connection.settings_dict["PORT"] or 5432)
    for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    raise AssertionError(f"no PostgreSQL cluster on port {port}")


def _wait_for_database(timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection.close()
            connection.ensure_connection()
            return
        except Exception:  # noqa: BLE001 -- not up yet
            time.sleep(0.5)
    raise AssertionError("PostgreSQL did not come back")


def test_postgresql_stopped_under_load_answers_only_503(live_server, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="database outage")
    url = f"{live_server.url}/api/v1/persons/?vertical=health"
    answers = collections.Counter()
    during = threading.Event()
    stop = threading.Event()

    def load():
        session = requests.Session()
        while not stop.is_set():
            response = session.get(url, headers={"Authorization": f"Bearer {partner.token}"}, timeout=15)
            code = response.json().get("code") if response.headers.get("Content-Type") == "application/problem+json" else None
            answers[(response.status_code, code, response.headers.get("Retry-After"), during.is_set())] += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    version, name = _cluster()
    try:
        time.sleep(1)
        during.set()
        subprocess.run(["pg_ctlcluster", version, name, "stop", "-m", "fast"], check=True, capture_output=True)
        time.sleep(5)
    finally:
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True)
        _wait_for_database()
        during.clear()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    statuses = {status for status, *_ in answers}
    assert statuses <= {200, 503}, answers
    outage = [key for key in answers if key[0] == 503]
    assert outage and all(code == "upstream_unavailable" and retry for _s, code, retry, _d in outage), answers
    assert any(status == 200 and not in_outage for status, _c, _r, in_outage in answers), answers  # served again
