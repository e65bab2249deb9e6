"""More than one machine, shown on one (issue #12 item 7): two gunicorn instances and two
Celery workers, each its own process, on the same PostgreSQL and Redis (what several hosts
share), and three checks that what must hold across processes holds:

1. rate limit: an integration of its own with a small policy; clearly more requests than its
   allowance (requests_per_minute + burst), alternately to both instances from several threads,
   within one window. Correct iff exactly the allowance is served across both, the rest 429.
2. job claims: import jobs, each sent twice to the queue both workers consume, sealer tasks
   in between. Correct iff every job ran once (one claim won, the other refused), wrote each
   row once (rows_done == rows, one record per row, no natural key twice), and both workers ran
   some of them.
3. audit chain: after both, the tenant's chain sealed and verified by the code of
   `audit_verify --tenant` (the workers' sealers ran concurrently with the appends).

Figures only, no speed target: `ok` says whether all three held (`python -m bench` exits
non-zero otherwise)."""
import json
import math
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import redis
import requests
from django.conf import settings
from django.core.files import File
from django.db.models import Count

from audit.chain import ChainBroken, seal_chain, verify_chain
from audit.models import AuditRecord
from audit.tasks import seal_audit_task
from exchange import batch
from exchange.models import ImportJob, ImportStatus
from exchange.ratelimit import WINDOW_SECONDS
from lifecycle import services
from registry.models import RateLimitPolicy
from scp_core.models import VerticalRecord
from scp_portal.celery import app

from . import batch_rate, data, stack
from .http_load import PROXY
from .tasks import told_import_task

THREADS = 4  # concurrent clients of the rate-limit check: requests overlap across both instances


def measure(tenant, vertical, workdir, *, rpm, burst, fired, jobs, job_rows, web_workers, timeout=300):
    began = time.monotonic()
    partnered = _limited(tenant, vertical, rpm, burst)
    started = []
    try:
        for name in ("portal-a", "portal-b"):
            (workdir / name).mkdir(exist_ok=True)
            started.append(stack.gunicorn(workdir / name, workers=web_workers))
        workers = [stack.celery_worker(workdir, name=name) for name in ("a", "b")]
        started += workers
        _wait_ready(workers, timeout)
        rate = rate_limit([f"http://127.0.0.1:{s.port}" for s in started[:2]], partnered, vertical,
                          allowance=rpm + burst, fired=fired)
        claims = job_claims(partnered.integration, tenant, vertical, workdir, workers, jobs=jobs, rows=job_rows,
                            timeout=timeout)
    finally:
        for process in started:
            process.stop()
        partnered.close()
    chain = audit_chain(tenant)
    return {"gunicorn_instances": 2, "gunicorn_workers_each": web_workers, "celery_workers": 2,
            "rate_limit": rate, "jobs": claims, "audit_chain": chain, "seconds": round(time.monotonic() - began, 1),
            "ok": rate["correct"] and claims["correct"] and chain["ok"]}


def _limited(tenant, vertical, rpm, burst):
    """A new Active integration (its own Keycloak client and an empty rate-limit count) with a
    small policy: the run's main integration keeps its unreachable one."""
    partnered = data.activate(tenant, vertical)
    policy, _ = RateLimitPolicy.objects.update_or_create(name=f"bench-multi-{rpm}-{burst}",
                                                         defaults={"requests_per_minute": rpm, "burst": burst})
    partnered.integration, _ = services.integration_configure_controls(
        integration=partnered.integration, actor=data.staff("ke-admin"), rate_limit_policy=policy)
    return partnered


def _wait_ready(workers, timeout):
    """Both workers answer a ping: jobs queued from now on can go to either."""
    names = [w.nodename for w in workers]
    deadline = time.monotonic() + timeout
    while True:
        answered = {name for reply in app.control.ping(destination=names, timeout=0.5) for name in reply}
        if answered >= set(names):
            return
        dead = [w.log for w in workers if not w.alive()]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"Celery workers not ready (answered: {sorted(answered)}; see {dead or names})")


def rate_limit(bases, partnered, vertical, *, allowance, fired):
    """`fired` requests, request i to instance i % 2, from THREADS threads, all in one window of
    the fixed-window limiter; returns what each instance answered."""
    headers = {**PROXY, "Authorization": f"Bearer {partnered.token()}"}
    # All requests must fall into one window: wait for the next if this one is nearly over
    # (a generous 20 ms per request on this machine, plus 2 s).
    needed = 2 + 0.02 * fired
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    waited = left + 0.1 if left < needed else 0.0
    time.sleep(waited)
    local = threading.local()

    def send(i):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        base = bases[i % len(bases)]
        response = local.session.get(f"{base}/api/v1/persons/?vertical={vertical.code}&page_size=1",
                                     headers=headers, timeout=30)
        return i % len(bases), response.status_code

    window = int(time.time() // WINDOW_SECONDS)
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(send, range(fired)))
    same_window = int(time.time() // WINDOW_SECONDS) == window
    if not same_window:
        raise RuntimeError("the rate-limit check crossed a window boundary; run it again")
    by_instance = [dict(Counter(code for n, code in answers if n == k)) for k in range(len(bases))]
    codes = Counter(code for _n, code in answers)
    allowed, refused = codes.get(200, 0), codes.get(429, 0)
    return {"allowance": allowance, "fired": fired, "allowed": allowed, "refused": refused, "waited_for_window_s": round(waited, 1),
            "other": {str(c): n for c, n in codes.items() if c not in (200, 429)},
            "by_instance": [{str(c): n for c, n in counts.items()} for counts in by_instance],
            "correct": allowed == allowance and refused == fired - allowance}


def job_claims(integration, tenant, vertical, workdir, workers, *, jobs, rows, timeout):
    """`jobs` imports of `rows` rows, each sent twice; a sealer task after each job."""
    key = f"bench:multi:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(settings.SCP_REDIS_URL)
    ids = []
    for n in range(jobs):
        path = batch_rate.write_file(workdir / f"multi-{n}.csv", tenant, vertical, rows)
        with path.open("rb") as handle:
            ids.append(str(batch.import_store(integration=integration, vertical=vertical, record_type="immunization",
                                              upload=File(handle, name="rows.csv")).pk))
    for job_id in ids:
        told_import_task.apply_async((job_id, key), queue=stack.QUEUE)
        told_import_task.apply_async((job_id, key), queue=stack.QUEUE)
        seal_audit_task.apply_async(queue=stack.QUEUE)
    deadline = time.monotonic() + timeout
    while client.llen(key) < 2 * jobs:
        if time.monotonic() > deadline or not all(w.alive() for w in workers):
            raise RuntimeError(f"{client.llen(key)} of {2 * jobs} import messages handled in {timeout}s "
                               f"(see {[str(w.log) for w in workers]})")
        time.sleep(0.05)
    told = [json.loads(item) for item in client.lrange(key, 0, -1)]
    client.delete(key)
    ran = Counter(t["job"] for t in told if t["result"] == ImportStatus.COMPLETED)
    refused = Counter(t["job"] for t in told if t["result"] == "not claimed")
    per_worker = Counter(t["worker"] for t in told if t["result"] == ImportStatus.COMPLETED)
    checked = []
    for job in ImportJob.objects.filter(pk__in=ids):
        records = VerticalRecord.objects.filter(import_key__startswith=f"{job.pk}:")
        twice = records.values("import_key").annotate(n=Count("id")).filter(n__gt=1).count()
        checked.append({"job": str(job.pk), "status": job.status, "rows": job.rows_total, "rows_done": job.rows_done,
                        "records": records.count(), "duplicate_keys": twice, "attempts": job.attempts,
                        "runs": ran[str(job.pk)], "claims_refused": refused[str(job.pk)],
                        "worker": next((t["worker"] for t in told
                                        if t["job"] == str(job.pk) and t["result"] == ImportStatus.COMPLETED), None)})
    once = [c for c in checked if c["status"] == ImportStatus.COMPLETED and c["rows_done"] == c["rows"] == rows
            and c["records"] == rows and not c["duplicate_keys"] and c["attempts"] == 1 and c["runs"] == 1
            and c["claims_refused"] == 1]
    both = sorted(per_worker) == sorted(w.nodename for w in workers)
    return {"jobs": jobs, "rows_each": rows, "messages": len(told), "completed_once": len(once),
            "jobs_by_worker": dict(per_worker), "both_workers_ran_jobs": both, "detail": checked,
            "correct": len(once) == jobs and len(checked) == jobs and both}


def audit_chain(tenant):
    """Seal what is left and verify the tenant's live chain (what `audit_verify --tenant` runs)."""
    sealed_now = seal_chain(tenant.code)
    try:
        checked, broken = verify_chain(tenant.code), None
    except ChainBroken as failure:
        checked, broken = 0, str(failure)
    unsealed = AuditRecord.objects.filter(tenant=tenant, seal__isnull=True).count()
    return {"chain": tenant.code, "records_checked": checked, "sealed_at_the_end": sealed_now,
            "unsealed_after": unsealed, "broken": broken, "ok": broken is None and checked > 0 and unsealed == 0}


def sizes(p):
    """The profile's numbers for this part, by name."""
    return {"rpm": p["multi_rpm"], "burst": p["multi_burst"],
            "fired": math.ceil(p["multi_fired_factor"] * (p["multi_rpm"] + p["multi_burst"])),
            "jobs": p["multi_jobs"], "job_rows": p["multi_job_rows"], "web_workers": p["multi_web_workers"]}
