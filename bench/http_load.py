"""Load on the real server: wrk against the governed and the bare endpoint (same server,
same client, same settings), and the consent-withdrawal leak check under load."""
import json
import subprocess
import threading
import time
from pathlib import Path

import requests

from scp_core.models import ConsentStatus, Person
from lifecycle.consent import consent_record

from .data import VERTICAL, regrant, staff

LUA = Path(__file__).with_name("report.lua")
PROXY = {"X-Forwarded-Proto": "https"}  # as nginx sets it: the production settings redirect plain HTTP


def wrk(url, *, seconds, connections, headers=()):
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA)]
    for name, value in {**PROXY, **dict(headers)}.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    run = json.loads(line.removeprefix("WRK_JSON "))
    run["throughput"] = run["requests"] / (run["duration_us"] / 1e6)
    percentiles = {p: us for p, us in run["percentiles"]}
    run["p50_ms"], run["p99_ms"] = percentiles[50] / 1000, percentiles[99] / 1000
    return run


def governed_vs_bare(base, partnered, *, seconds, connections):
    """Warm both up, then measure each in turn; every response must be a 2xx. Then the
    ledger's cost: the governed list against the same view without its ledger entry, in
    alternating rounds (A B B A A B B A), so that drift over the run weighs on both alike."""
    governed_url = f"{base}/api/v1/persons/?vertical={VERTICAL}"
    bare_url = f"{base}/bench/bare/persons/?tenant_id={partnered.integration.tenant_id}"
    unrecorded_url = f"{base}/bench/unrecorded/persons/?vertical={VERTICAL}"
    same = _same_rows(governed_url, bare_url, partnered.token())
    runs = {}
    for name, url in (("governed", governed_url), ("bare", bare_url)):
        runs[name] = _measured(name, url, partnered, seconds=seconds, connections=connections)
    rounds = {"ledger_on": [], "ledger_off": []}
    urls = {"ledger_on": governed_url, "ledger_off": unrecorded_url}
    auth = {"Authorization": f"Bearer {partnered.token()}"}
    wrk(unrecorded_url, seconds=max(1, seconds // 5), connections=connections, headers=auth)  # warm-up
    # Short rounds, alternating A B B A A B B A: the machine's drift over the run (which moved
    # one side by 10 % between two 7 s rounds) weighs on both sides alike.
    for name in ("ledger_on", "ledger_off", "ledger_off", "ledger_on") * 2:
        run = wrk(urls[name], seconds=max(1, seconds // 4), connections=connections, headers=auth)
        if run["errors"]["status"] or run["errors"]["timeout"]:
            raise RuntimeError(f"{name}: {run['errors']} (non-2xx or timed-out responses)")
        rounds[name].append(run)
    for name, measured in rounds.items():
        requests_, seconds_ = sum(r["requests"] for r in measured), sum(r["duration_us"] for r in measured) / 1e6
        runs[name] = {"requests": requests_, "throughput": requests_ / seconds_,
                      "rounds": [round(r["throughput"], 1) for r in measured], "errors": {"status": 0, "timeout": 0}}
    return {"same_rows": same, "connections": connections, "seconds": seconds, **runs}


def first_vs_second(base, partnered, *, seconds, connections):
    """The governed list on the freshly seeded database, with no warm-up at all (the server's
    first requests, the tables' first reads after the bulk load), against the same run right
    after it (issue #12 item 2: the first run as fast as the tenth)."""
    url = f"{base}/api/v1/persons/?vertical={VERTICAL}"
    auth = {"Authorization": f"Bearer {partnered.token()}"}
    runs = {}
    for name in ("first", "second"):
        runs[name] = run = wrk(url, seconds=seconds, connections=connections, headers=auth)
        if run["errors"]["status"] or run["errors"]["timeout"]:
            raise RuntimeError(f"{name} run: {run['errors']} (non-2xx or timed-out responses)")
    return runs


def _measured(name, url, partnered, *, seconds, connections):
    auth = {"Authorization": f"Bearer {partnered.token()}"} if "bare" not in url else {}
    wrk(url, seconds=max(1, seconds // 5), connections=connections, headers=auth)  # warm-up
    run = wrk(url, seconds=seconds, connections=connections, headers=auth)
    if run["errors"]["status"] or run["errors"]["timeout"]:
        raise RuntimeError(f"{name}: {run['errors']} (non-2xx or timed-out responses)")
    return run


def _same_rows(governed_url, bare_url, token):
    governed = requests.get(governed_url, headers={**PROXY, "Authorization": f"Bearer {token}"}, timeout=30)
    bare = requests.get(bare_url, headers=PROXY, timeout=30)
    governed.raise_for_status(), bare.raise_for_status()
    return [r["id"] for r in governed.json()["results"]] == [r["id"] for r in bare.json()["results"]]


def consent_leak(base, partnered, vertical, *, withdrawals, pollers, interval=0.2, seconds_after=1.0):
    """Pollers read the first page (100 persons) without pause while persons on it withdraw
    consent one by one, `interval` seconds apart. A leak is a withdrawn person in a response
    to a request sent after the withdrawal committed. Consent is granted again afterwards."""
    url = f"{base}/api/v1/persons/?vertical={vertical.code}&page_size=100"
    headers = {**PROXY, "Authorization": f"Bearer {partnered.token()}"}
    first_page = requests.get(url, headers=headers, timeout=30).json()["results"]
    targets = [row["id"] for row in first_page[:: max(1, len(first_page) // withdrawals)][:withdrawals]]
    withdrawn_at, observations, failures, stop = {}, [], [], threading.Event()

    def poll():
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.time()
                try:
                    response = session.get(url, headers=headers, timeout=30)
                    response.raise_for_status()
                except requests.RequestException as exc:  # a poller that stops would weaken the check
                    failures.append(repr(exc))
                    return
                observations.append((sent, {row["id"] for row in response.json()["results"]}))

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    root = staff("root")
    persons = {str(p.pk): p for p in Person.objects.filter(pk__in=targets).select_related("tenant")}
    try:
        for person_id in targets:
            time.sleep(interval)
            consent_record(person=persons[person_id], vertical=vertical, status=ConsentStatus.WITHDRAWN, actor=root)
            withdrawn_at[person_id] = time.time()  # after the commit
        time.sleep(seconds_after)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        regrant(persons.values(), vertical)
    if failures:
        raise RuntimeError(f"pollers failed during the consent check: {failures}")
    leaked = {pid for sent, ids in observations for pid in ids & withdrawn_at.keys() if sent > withdrawn_at[pid]}
    checked = sum(1 for sent, ids in observations for pid in withdrawn_at if sent > withdrawn_at[pid])
    return {"withdrawals": len(withdrawn_at), "responses": len(observations), "checks_after_withdrawal": checked,
            "leaked_persons": len(leaked)}

