"""Audit at volume (issue #12 item 6, opt-in: `make bench ARGS="--audit-volume 10000000"`).

The audit table is filled to N records of a tenant of its own (`vol`, so that its chain runs in
time order from its first record, as a real one does), spread over the last ten months (ten
monthly partitions, N/10 in the current one, where appends land), then:
- the append rate: the audit service against a raw INSERT of the same values into the same
  table (bench/audit_rate.py), before the fill and at N, in the same run;
- `audit_verify --tenant vol` over the whole chain;
- retention of the two oldest months (dropped whole) and `audit_verify` again, from the anchor.

How the fill goes quickly and still yields a true chain: the records are inserted by
generate_series in PostgreSQL, one statement per month; their seals are computed in Python with
the chain's own rules (audit.chain.record_document's document, the verifier's link_hash), from
the records as read back, and COPied in, with a checkpoint signed by audit.chain.checkpoint
every SCP_AUDIT_SEAL_BATCH records, as the sealer does. Nothing is trusted: audit_verify then
recomputes every hash from the stored records."""
import datetime
import json
import time

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit import partitions
from audit.chain import chain_head, checkpoint, record_document, seal_chain
from audit.models import AuditRecord
from audit.retention import purge_tenant
from audit.services import AuditEvent, AuditResult
from scp_core.models import Tenant
from audit.verifier.scp_audit_verify import link_hash

from . import audit_rate

MONTHS = 10
VOLUME_TENANT = "vol"
STATEMENT_ROWS = 1_000_000  # rows per INSERT … SELECT (one transaction each)
DETAILS = {"method": "GET", "path": "/api/v1/persons/", "latency_ms": 4.2, "data_categories": ["birth_date", "id"],
           "consent": {"checked": "in_effect filter", "allowed": 100}}


def measure(integration, *, records, appends, log):
    figures = {"records": records, "months": MONTHS}
    log = _stamped(log)
    log("audit append vs raw INSERT before the fill")
    figures["before"] = _rates(audit_rate.measure(integration, appends=appends))
    tenant, _ = Tenant.objects.get_or_create(code=VOLUME_TENANT, defaults={"name": "Audit volume (benchmark)"})
    seal_chain(tenant.code)
    started = time.perf_counter()
    months = _fill(tenant, integration.auth_client_id, records, log)
    figures["fill_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    _seal(tenant, log)
    figures["seal_seconds"] = time.perf_counter() - started
    figures["partitions"] = months
    with connection.cursor() as cursor:
        cursor.execute("SELECT scp_analyze(ARRAY['audit_auditrecord', 'audit_auditseal', 'audit_auditcheckpoint'])")
        cursor.execute("SELECT pg_total_relation_size(c.oid) FROM pg_class c WHERE relname = 'audit_auditseal'")
        seal_bytes = cursor.fetchone()[0]
        cursor.execute("""SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
                          WHERE i.inhparent = 'audit_auditrecord'::regclass""")
        figures["table_gb"] = round(float(cursor.fetchone()[0] + seal_bytes) / 1e9, 2)
    log(f"audit append vs raw INSERT at {records:,} records")
    figures["at_volume"] = _rates(audit_rate.measure(integration, appends=appends))
    log(f"audit_verify --tenant {tenant.code} over {records:,} records")
    figures["verify"] = _verify(tenant)
    log("retention: the two oldest months")
    oldest_kept = months[2][1]
    tenant.audit_retention_days = (timezone.now() - oldest_kept).days
    tenant.save(update_fields=["audit_retention_days"])
    started = time.perf_counter()
    removed = purge_tenant(tenant)
    figures["retention"] = {"records": removed, "seconds": time.perf_counter() - started,
                            "dropped": [name for name, *_ in months if not _exists(name)]}
    tenant.audit_retention_days = None
    tenant.save(update_fields=["audit_retention_days"])
    log(f"audit_verify --tenant {tenant.code} from the retention anchor")
    figures["verify_after_retention"] = _verify(tenant)
    return figures


def _stamped(log):
    return lambda message: log(f"{datetime.datetime.now(datetime.UTC):%H:%M:%S} {message}")


def _rates(measured):
    service, raw = measured["service"], measured["raw_insert"]
    return {"appends": measured["appends"], "service_rate": service["rate"], "raw_insert_rate": raw["rate"],
            "ratio": service["rate"] / raw["rate"], "service_p99_ms": service["p99_ms"], "raw_insert_p99_ms": raw["p99_ms"]}


def _months():
    """[(name, first instant, end)] of the last MONTHS months, the current one ending an hour ago."""
    start = partitions.month_start(timezone.now())
    months = []
    for _ in range(MONTHS):
        end = partitions.next_month(start)
        months.append((f"{AuditRecord._meta.db_table}_y{start:%Y}m{start:%m}", start, end))
        start = (start - datetime.timedelta(days=1)).replace(day=1)
    months.reverse()
    name, start, _end = months[-1]
    months[-1] = (name, start, max(start + datetime.timedelta(minutes=1), timezone.now() - datetime.timedelta(hours=1)))
    return months


def _fill(tenant, client_id, records, log):
    months = _months()
    partitions.ensure(first=months[0][1], last=months[-1][1])
    columns = ("occurred_at, event_type, request_id, tenant_id, actor, client_id, source_ip, verticals, "
               "result, status_code, error_code, details")
    done = 0
    for index, (name, start, end) in enumerate(months):
        count = records * (index + 1) // MONTHS - records * index // MONTHS
        for offset in range(0, count, STATEMENT_ROWS):
            rows = min(STATEMENT_ROWS, count - offset)
            with connection.cursor() as cursor:
                # Evenly over the month, ids rising with time, as appends would leave them.
                cursor.execute(
                    f"INSERT INTO {AuditRecord._meta.db_table} ({columns}) "
                    "SELECT %s::timestamptz + (%s::timestamptz - %s::timestamptz) * ((g + %s)::float8 / %s), "
                    "%s, 'volume-' || (g + %s), %s, %s, %s, '127.0.0.1', '[\"health\"]', %s, 200, '', %s::jsonb "
                    "FROM generate_series(0, %s - 1) AS g",
                    [start, end, start, offset, count, AuditEvent.API_REQUEST, done + offset, tenant.pk,
                     client_id, client_id, AuditResult.SUCCESS,
                     json.dumps(DETAILS), rows])
        done += count
        log(f"  {done:,} records ({name})")
    return months


def _seal(tenant, log):
    """Seal every pending record of the tenant's chain, as the sealer would, in bulk."""
    chain = tenant.code
    seq, prev = chain_head(chain)
    sample = AuditRecord.objects.select_related("tenant").filter(tenant=tenant, seal__isnull=True).order_by("id").first()
    template = record_document(sample)
    params = connection.settings_dict
    dsn = dict(host=params["HOST"] or "127.0.0.1", port=params["PORT"] or 5432, dbname=params["NAME"], user=params["USER"],
               password=params["PASSWORD"])
    batch = settings.SCP_AUDIT_SEAL_BATCH
    block = STATEMENT_ROWS
    sealed = 0
    with psycopg.connect(**dsn) as reader, psycopg.connect(**dsn) as writer:
        with reader.cursor(name="pending") as pending:
            pending.itersize = 20_000
            pending.execute(
                "SELECT r.id, to_char(r.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), r.request_id "
                f"FROM {AuditRecord._meta.db_table} r LEFT JOIN audit_auditseal s ON s.record_id = r.id "
                "WHERE r.tenant_id = %s AND s.id IS NULL ORDER BY r.id", [tenant.pk])
            rows = iter(pending)
            while True:
                points = []
                with writer.cursor() as cursor, cursor.copy(
                        "COPY audit_auditseal (chain, seq, record_id, prev_hash, hash, sealed_at) FROM STDIN") as copy:
                    now = timezone.now()
                    n = 0
                    for record_id, occurred_at, request_id in rows:
                        document = {**template, "id": record_id, "occurred_at": occurred_at, "request_id": request_id}
                        if sealed == 0:  # the bulk document is the chain's own document of the record
                            assert document == record_document(AuditRecord.objects.select_related("tenant").get(pk=record_id))
                        seq += 1
                        digest = link_hash(prev, document)
                        copy.write_row((chain, seq, record_id, prev, digest, now))
                        prev = digest
                        sealed += 1
                        n += 1
                        if seq % batch == 0:
                            points.append((seq, digest))
                        if n == block:
                            break
                writer.commit()
                if n and (not points or points[-1][0] != seq):
                    points.append((seq, prev))
                for point_seq, point_hash in points:
                    checkpoint(chain, point_seq, point_hash)
                if n:
                    log(f"  {sealed:,} sealed")
                if n < block:
                    break
    return sealed


def _verify(tenant):
    started = time.perf_counter()
    call_command("audit_verify", "--tenant", tenant.code)  # raises (exit 1) if the chain does not hold
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_auditseal WHERE chain = %s", [tenant.code])
        records = cursor.fetchone()[0]
    return {"seconds": seconds, "records": records, "rate": records / seconds}


def _exists(name):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def markdown(f):
    before, at = f["before"], f["at_volume"]
    lines = [
        f"Audit at volume: {f['records']:,} records of one chain over {f['months']} monthly partitions "
        f"({f['table_gb']} GB with the seals), filled in {f['fill_seconds']:.0f} s, sealed in {f['seal_seconds']:.0f} s.",
        "",
        "| measure | audit service | raw INSERT | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| append before the fill (records/s) | {before['service_rate']:,.0f} | {before['raw_insert_rate']:,.0f} | "
        f"{before['ratio']:.2f} | |",
        f"| append at {f['records']:,} records (records/s) | {at['service_rate']:,.0f} | {at['raw_insert_rate']:,.0f} | "
        f"{at['ratio']:.2f} | ≥ 0.8 {'met' if at['ratio'] >= 0.8 else 'MISSED'} |",
        "",
        f"- `audit_verify --tenant`: {f['verify']['records']:,} records in {f['verify']['seconds']:.0f} s "
        f"({f['verify']['rate']:,.0f} records/s)",
        f"- retention of the two oldest months: {f['retention']['records']:,} records removed in "
        f"{f['retention']['seconds']:.1f} s (dropped whole: {', '.join(f['retention']['dropped']) or 'none'})",
        f"- `audit_verify --tenant` from the anchor: {f['verify_after_retention']['records']:,} records in "
        f"{f['verify_after_retention']['seconds']:.0f} s",
    ]
    return "\n".join(lines)
