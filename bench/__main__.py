"""`python -m bench [--tiny] [--out DIR]` (what `make bench` runs after starting the services).

Starts gunicorn with the production settings on PostgreSQL and Redis, a Celery worker and
an nginx webhook receiver, measures each governed path beside its bare baseline in the same
run, then runs two gunicorn instances and two Celery workers on the same PostgreSQL and Redis
(rate limit, job claims and the audit chain across processes), and writes bench.json, bench.md
and latency.png to DIR. Exits non-zero if a measurement fails, a withdrawn person leaks or a
check across processes fails; a missed speed target is reported in the table, not fatal.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import django

PROFILES = {
    # full: the real run (a few minutes); tiny: the version the test suite runs so it keeps working.
    "full": {"persons": 100_000, "http_seconds": 15, "appends": 5000, "import_rows": 100_000, "import_export_rows": 3000,
             "deliveries": 2000, "noops": 5000, "withdrawals": 20, "pollers": 4, "profile_seconds": 10,
             "multi_rpm": 300, "multi_burst": 100, "multi_fired_factor": 3, "multi_jobs": 16, "multi_job_rows": 5000,
             "multi_web_workers": 2},
    "tiny": {"persons": 600, "http_seconds": 2, "appends": 200, "import_rows": 500, "import_export_rows": 100,
             "deliveries": 30, "noops": 100, "withdrawals": 5, "pollers": 2, "profile_seconds": 2,
             "multi_rpm": 20, "multi_burst": 10, "multi_fired_factor": 3, "multi_jobs": 6, "multi_job_rows": 200,
             "multi_web_workers": 1},
}

# The scale curve (issue #12 item 3): database sizes (persons of two tenants, mixed consent),
# connections, and seconds per measured run.
CURVES = {
    "full": {"sizes": [100_000, 1_000_000], "connections": [2, 8], "seconds": 15},
    "tiny": {"sizes": [1_000, 3_000], "connections": [2], "seconds": 2},
}


def main():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run that checks the benchmark works")
    parser.add_argument("--out", default="artifacts/bench", help="where the JSON, Markdown and PNG go")
    parser.add_argument("--curve", action="store_true",
                        help="only the scale curve (bench/scale.py), on a database of its own (scripts/bench.sh runs it "
                             "after the main run)")
    parser.add_argument("--persons", type=int, metavar="N",
                        help="with --curve: the curve's largest size (default 1,000,000; e.g. 10000000)")
    parser.add_argument("--scale", metavar="SIZES",
                        help="with --curve: exactly these database sizes, e.g. 100000,1000000 (implies --curve)")
    parser.add_argument("--connections", help="with --curve: the numbers of connections (default 2,8)")
    parser.add_argument("--audit-volume", type=int, metavar="N",
                        help="only audit at volume (bench/audit_volume.py): append rate and audit_verify at N records")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.audit_volume:
        return audit_volume(args.audit_volume, PROFILES["tiny" if args.tiny else "full"]["appends"], out)
    if args.curve or args.scale:
        profile = CURVES["tiny" if args.tiny else "full"]
        sizes = [int(n) for n in args.scale.split(",")] if args.scale else curve_sizes(profile["sizes"], args.persons)
        connections = [int(n) for n in args.connections.split(",")] if args.connections else profile["connections"]
        return scale_curve(sizes, connections, profile["seconds"], out)
    profile = "tiny" if args.tiny else "full"
    figures = run(profile, PROFILES[profile], out)
    from .report import write

    print(write(figures, out))
    print(f"written: {out / 'bench.json'}, {out / 'bench.md'}, {out / 'stages.md'}, {out / 'latency.png'}, "
          f"{out / 'flame.svg'}")
    return 1 if figures["consent"]["leaked_persons"] or not figures["multi"]["ok"] else 0


def curve_sizes(defaults, largest=None):
    """The profile's sizes, up to and including `largest` when it is given."""
    if largest is None:
        return defaults
    return sorted({n for n in defaults if n < largest} | {largest})


def scale_curve(sizes, connections, seconds, out):
    """The governed list against the bare query as the database grows (issue #12 item 3)."""
    from django.conf import settings

    from . import data, scale, stack

    if settings.DEBUG:
        raise SystemExit("run the benchmark with production settings: DJANGO_DEBUG=false (make bench does)")
    tenant, vertical = data.reference()  # on a grown database too (`--scale`), its consent mix kept
    partnered = data.activate(tenant, vertical)

    def save(points):
        (out / "scale.json").write_text(json.dumps(points, indent=2))
        (out / "scale.md").write_text(scale.markdown(points) + "\n")

    try:
        with tempfile.TemporaryDirectory(prefix="scp-bench-") as tmp:
            server = stack.gunicorn(Path(tmp), workers=os.cpu_count() or 2)
            try:
                points = scale.curve(f"http://127.0.0.1:{server.port}", partnered, tenant, vertical, sizes=sizes,
                                     connections=connections, seconds=seconds, log=_log, save=save)
            finally:
                server.stop()
    finally:
        partnered.close()
    table = scale.markdown(points)
    print(table)
    return 0


def audit_volume(records, appends, out):
    """The audit table at N records: append rate, audit_verify, retention (issue #12 item 6)."""
    from django.conf import settings

    from . import audit_volume as volume, data

    if settings.DEBUG:
        raise SystemExit("run the benchmark with production settings: DJANGO_DEBUG=false (make bench does)")
    tenant, vertical = data.reference()
    partnered = data.activate(tenant, vertical)
    try:
        figures = volume.measure(partnered.integration, records=records, appends=appends, log=_log)
    finally:
        partnered.close()
    (out / "audit_volume.json").write_text(json.dumps(figures, indent=2, default=str))
    table = volume.markdown(figures)
    (out / "audit_volume.md").write_text(table + "\n")
    print(table)
    return 0


def _log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(profile, p, out):
    from django.conf import settings

    from . import data

    if settings.DEBUG:
        raise SystemExit("run the benchmark with production settings: DJANGO_DEBUG=false (make bench does)")
    figures = {"profile": profile, "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}",
               "sizes": p}
    _log(f"seeding {p['persons']} consenting persons and activating an integration")
    tenant, vertical = data.seed(p["persons"])
    partnered = data.activate(tenant, vertical)
    try:
        _measure(figures, p, tenant, vertical, partnered, out)
    finally:
        partnered.close()
    return figures


def _measure(figures, p, tenant, vertical, partnered, out):
    from . import audit_rate, batch_rate, http_load, multi, profile, stack, webhook_rate

    with tempfile.TemporaryDirectory(prefix="scp-bench-") as tmp:
        workdir = Path(tmp)
        server = stack.gunicorn(workdir, workers=os.cpu_count() or 2)
        try:
            base = f"http://127.0.0.1:{server.port}"
            _log("the first run on the fresh database vs the second")
            figures["first_run"] = http_load.first_vs_second(base, partnered, seconds=max(1, p["http_seconds"] // 3),
                                                             connections=os.cpu_count() or 2)
            _log("governed vs bare GET /api/v1/persons/ (wrk)")
            figures["http"] = http_load.governed_vs_bare(base, partnered, seconds=p["http_seconds"],
                                                         connections=os.cpu_count() or 2)
            _log("consent withdrawals under load")
            figures["consent"] = http_load.consent_leak(base, partnered, vertical, withdrawals=p["withdrawals"],
                                                        pollers=p["pollers"])
            figures["gunicorn_rss_mb"] = [round(stack.rss_mb(pid), 1) for pid in stack.worker_pids(server)]
            _log("where a governed request's time goes (py-spy)")
            figures["stages"], flame = profile.stage_costs(
                server, f"{base}/api/v1/persons/?vertical={vertical.code}", {"Authorization": f"Bearer {partnered.token()}"},
                seconds=p["profile_seconds"], connections=os.cpu_count() or 2, workdir=workdir)
            shutil.copyfile(flame, out / "flame.svg")
        finally:
            server.stop()
        _log("audit append vs raw INSERT")
        figures["audit"] = audit_rate.measure(partnered.integration, appends=p["appends"])
        _log("batch import vs COPY and django-import-export")
        path = batch_rate.write_file(workdir / "import.csv", tenant, vertical, p["import_rows"])
        figures["import"] = {
            "governed": batch_rate.governed(path, partnered.integration, vertical, p["import_rows"]),
            "copy": batch_rate.copy(path, p["import_rows"]),
            "records_floor": batch_rate.records_floor(path, partnered.integration, vertical, p["import_rows"]),
            "import_export": batch_rate.import_export(path, vertical, p["import_export_rows"]),
        }
        _log("webhook deliveries vs Celery no-op tasks (one worker)")
        figures["webhooks"] = webhook_rate.measure(partnered.integration, vertical, workdir,
                                                   deliveries=p["deliveries"], noops=p["noops"])
        _log("more than one machine, shown on one: two gunicorn instances, two Celery workers")
        figures["multi"] = multi.measure(tenant, vertical, workdir, **multi.sizes(p))


if __name__ == "__main__":
    sys.exit(main())
