"""The benchmark keeps working: its tiny version runs on the real services, and its table
says when a target is missed. (The real run is `make bench`, never part of the tests.)"""
import base64
import json
import os
import secrets
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from bench.report import ratios


def _bench_env():
    params = connection.settings_dict
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SCP_"))},
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_DEBUG": "false",
        "KEYCLOAK_PORTAL_CLIENT_SECRET": "scp-portal-dev-secret", "SCP_BENCH_DEV_REALM": "true",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "SCP_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "SCP_AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        "DATABASE_URL": f"postgres://{params['USER']}:{params['PASSWORD']}@{params['HOST']}:{params['PORT']}/{params['NAME']}",
        # The bare COPY baseline creates its table as the owner, on the test database.
        "DATABASE_OWNER_URL": urlunsplit(urlsplit(os.environ["DATABASE_OWNER_URL"])._replace(path=f"/{params['NAME']}")),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "KEYCLOAK_URL": settings.KEYCLOAK_URL,
    }


@pytest.mark.django_db(transaction=True)
def test_tiny_benchmark_measures_every_figure_beside_its_baseline(tmp_path):
    # When the tiny benchmark runs against the test database with production settings
    done = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--out", str(tmp_path)], check=False,
                          cwd=settings.BASE_DIR,
                          env=_bench_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # Then every figure is there with its baseline, measured on the same rows
    figures = json.loads((tmp_path / "bench.json").read_text())
    http = figures["http"]
    assert http["same_rows"] is True
    assert http["ledger_on"]["requests"] > 0 and http["ledger_off"]["requests"] > 0
    for side in ("governed", "bare"):
        assert http[side]["requests"] > 0 and http[side]["errors"]["status"] == 0
        assert 0 < http[side]["p50_ms"] <= http[side]["p99_ms"]
    assert figures["audit"]["service"]["rate"] > 0 and figures["audit"]["raw_insert"]["rate"] > 0
    assert all(figures["import"][k]["rate"] > 0 for k in ("governed", "copy", "records_floor", "import_export"))
    assert figures["webhooks"]["webhook"]["delivered"] == figures["sizes"]["deliveries"]
    assert figures["webhooks"]["noop"]["rate"] > 0
    # and the leak check looked at responses sent after withdrawals, and found none
    assert figures["consent"]["checks_after_withdrawal"] > 0
    assert figures["consent"]["leaked_persons"] == 0
    assert figures["gunicorn_rss_mb"] and all(rss > 0 for rss in figures["gunicorn_rss_mb"])
    assert len(figures["table"]) == 12
    table = (tmp_path / "bench.md").read_text()
    assert table.count("\n| ") == 14  # the header, its rule and twelve figures
    # and the first run on the fresh database beside the second
    assert all(figures["first_run"][run]["requests"] > 0 for run in ("first", "second"))
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # and a per-stage cost table of the governed request, from a profile, with its flame graph
    stages = {row["stage"]: row["us_per_request"] for row in figures["stages"]["stages"]}
    assert stages["audit insert and commit (with the ledger row)"] > 0 and stages["token and JWKS"] > 0
    assert figures["stages"]["total_us"] > 0 and "| token and JWKS |" in (tmp_path / "stages.md").read_text()
    assert b"<svg" in (tmp_path / "flame.svg").read_bytes()[:2000]
    # and with two gunicorn instances and two Celery workers on the same PostgreSQL and Redis,
    # the rate limit is one allowance across both, each job ran once on one of both workers,
    # and the audit chain holds
    multi = figures["multi"]
    rate = multi["rate_limit"]
    assert rate["allowed"] == rate["allowance"] and rate["refused"] == rate["fired"] - rate["allowance"] > 0
    assert all(counts.get("200", 0) > 0 for counts in rate["by_instance"])
    jobs = multi["jobs"]
    assert jobs["completed_once"] == jobs["jobs"] and len(jobs["jobs_by_worker"]) == 2
    assert all(job["records"] == job["rows"] and job["claims_refused"] == 1 for job in jobs["detail"])
    assert multi["audit_chain"]["ok"] and multi["audit_chain"]["records_checked"] > 0 and multi["ok"]
    assert "## More than one machine, shown on one" in table


@pytest.mark.django_db(transaction=True)
def test_tiny_scale_curve_compares_first_and_deep_pages_at_each_size(tmp_path):
    # When the tiny scale curve grows the database in two steps (two tenants, mixed consent)
    done = subprocess.run([sys.executable, "-m", "bench", "--curve", "--tiny", "--out", str(tmp_path)], check=False,
                          cwd=settings.BASE_DIR, env=_bench_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # Then each size has the governed list beside the bare query, first page and deep page
    points = json.loads((tmp_path / "scale.json").read_text())
    assert [p["page"] for p in points] == ["first", "deep"] * 2
    assert 1000 <= points[0]["persons"] == points[1]["persons"] < 3000 <= points[2]["persons"] == points[3]["persons"]
    assert all(p["governed_rps"] > 0 and p["bare_rps"] > 0 and p["ratio"] > 0 for p in points)
    assert "| persons | connections | page |" in (tmp_path / "scale.md").read_text()


def test_the_curve_runs_up_to_the_size_asked_for():
    from bench.__main__ import CURVES, curve_sizes

    assert curve_sizes(CURVES["full"]["sizes"]) == [100_000, 1_000_000]
    assert curve_sizes(CURVES["full"]["sizes"], 10_000_000) == [100_000, 1_000_000, 10_000_000]
    assert curve_sizes(CURVES["full"]["sizes"], 500_000) == [100_000, 500_000]


def _figures(**overrides):
    http_side = {"throughput": 100.0, "p50_ms": 5.0, "p99_ms": 10.0}
    figures = {
        "http": {"governed": dict(http_side), "bare": dict(http_side), "ledger_on": dict(http_side),
                 "ledger_off": dict(http_side)},
        "first_run": {"first": dict(http_side), "second": dict(http_side)},
        "audit": {"service": {"rate": 900.0}, "raw_insert": {"rate": 1000.0}},
        "import": {"governed": {"rate": 20000.0}, "copy": {"rate": 100000.0}, "import_export": {"rate": 500.0}},
        "webhooks": {"webhook": {"rate": 400.0}, "noop": {"rate": 1000.0}},
        "consent": {"leaked_persons": 0},
        "gunicorn_rss_mb": [90.0, 95.0],
    }
    for path, value in overrides.items():
        *parents, leaf = path.split("__")
        node = figures
        for name in parents:
            node = node[name]
        node[leaf] = value
    return figures


def test_every_target_met_reads_yes():
    assert all(row["met"] in (True, None) for row in ratios(_figures()))


@pytest.mark.parametrize(("override", "measure"), [
    ({"http__governed__throughput": 79.0}, "GET /api/v1/persons/ throughput (req/s)"),
    ({"http__governed__p99_ms": 15.5}, "GET /api/v1/persons/ p99 latency (ms)"),
    ({"first_run__first__throughput": 89.0}, "GET /api/v1/persons/ first run on the fresh database vs the second (req/s)"),
    ({"http__ledger_off__throughput": 112.0}, "GET /api/v1/persons/ with the disclosure ledger vs without (req/s)"),
    ({"audit__service__rate": 790.0}, "audit append (records/s)"),
    ({"import__governed__rate": 9000.0}, "batch import vs COPY (rows/s)"),
    ({"import__import_export__rate": 5000.0}, "batch import vs django-import-export (rows/s)"),
    ({"webhooks__webhook__rate": 290.0}, "webhook deliveries per worker (/s)"),
    ({"consent__leaked_persons": 1}, "leaked persons after consent withdrawal"),
    ({"gunicorn_rss_mb": [90.0, 151.0]}, "largest gunicorn worker RSS (MB)"),
])
def test_a_missed_target_reads_no(override, measure):
    rows = {row["measure"]: row["met"] for row in ratios(_figures(**override))}
    assert rows[measure] is False
    assert all(met in (True, None) for name, met in rows.items() if name != measure)
