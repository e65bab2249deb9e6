"""The scale curve (issue #12 item 3): the governed `GET /api/v1/persons/` against the bare
query, for the first page and for a page deep into the list (a cursor half-way), at each size
of a growing database (persons of two tenants with the demo's mix of granted, never-given and
withdrawn consent), at each number of connections. `python -m bench --scale 100000,1000000`.

Unlike the main comparison, the two sides do not serve the same rows here: the bare query reads
the tenant's persons with no consent filter (what "no governance" costs), the governed one only
those whose consent covers the integration's purpose."""
import base64
from urllib.parse import quote, urlencode

from lifecycle.demo import seed_persons
from scp_core.models import Person

from .data import VERTICAL
from .http_load import wrk


def curve(base, partnered, tenant, vertical, *, sizes, connections, seconds, log, save=lambda points: None):
    """The points of every size; `save(points)` after each size, so that a long run (growing to
    10,000,000 takes a while) keeps what it measured if it is stopped."""
    points = []
    for size in sorted(sizes):
        missing = size - Person.objects.count()
        if missing > 0:
            log(f"growing to {size} persons (two tenants, mixed consent)")
            seed_persons(missing)  # streamed with COPY, then ANALYZE (scp_core.statistics)
        middle = _middle(tenant, vertical)
        auth = {"Authorization": f"Bearer {partnered.token()}"}
        pages = {
            "first": (f"{base}/api/v1/persons/?vertical={VERTICAL}",
                      f"{base}/bench/bare/persons/?tenant_id={tenant.pk}"),
            "deep": (f"{base}/api/v1/persons/?vertical={VERTICAL}&cursor={_cursor(middle)}",
                     f"{base}/bench/bare/persons/?tenant_id={tenant.pk}&after={middle}"),
        }
        for count in connections:
            for page, (governed_url, bare_url) in pages.items():
                log(f"{size} persons, {count} connections, {page} page")
                governed = _run(governed_url, auth, seconds, count)
                bare = _run(bare_url, {}, seconds, count)
                points.append({
                    "persons": Person.objects.count(), "connections": count, "page": page,
                    "governed_rps": round(governed["throughput"], 1), "bare_rps": round(bare["throughput"], 1),
                    "ratio": round(governed["throughput"] / bare["throughput"], 3),
                    "governed_p99_ms": round(governed["p99_ms"], 2), "bare_p99_ms": round(bare["p99_ms"], 2),
                    "governed_timeouts": governed["errors"]["timeout"], "bare_timeouts": bare["errors"]["timeout"],
                })
        save(points)
    return points


def _run(url, headers, seconds, connections):
    """A warm-up, then the measured run. A non-2xx answer is a failure; a request slower than
    wrk's 10 s timeout is counted (in the curve: a point where the path is not flat)."""
    wrk(url, seconds=max(1, seconds // 5), connections=connections, headers=headers)
    run = wrk(url, seconds=seconds, connections=connections, headers=headers)
    if run["errors"]["status"]:
        raise RuntimeError(f"{url}: {run['errors']} (non-2xx responses)")
    if not run["requests"]:
        raise RuntimeError(f"{url}: no request completed in {seconds} s")
    return run


def _middle(tenant, vertical):
    """The id half-way through the persons the integration sees (ordered by id, as its cursor)."""
    visible = Person.objects.in_tenant(tenant).filter(pk__in=Person.objects.with_consent_in_effect(vertical))
    ids = visible.order_by("id").values_list("id", flat=True)
    return str(ids[visible.count() // 2])


def _cursor(position):
    """DRF's cursor for "after this id" (CursorPagination: base64 of its query string)."""
    return quote(base64.b64encode(urlencode({"p": position}).encode()).decode())


def markdown(points):
    lines = ["| persons | connections | page | governed (req/s) | bare (req/s) | ratio | p99 governed / bare (ms) "
             "| timeouts (> 10 s) governed / bare |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for p in points:
        lines.append(f"| {p['persons']:,} | {p['connections']} | {p['page']} | {p['governed_rps']:,} | {p['bare_rps']:,} "
                     f"| {p['ratio']:.2f} | {p['governed_p99_ms']} / {p['bare_p99_ms']} "
                     f"| {p['governed_timeouts']} / {p['bare_timeouts']} |")
    return "\n".join(lines)
