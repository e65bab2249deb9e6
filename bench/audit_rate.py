"""Audit append rate: the audit service's single-record append (ORM, append-only triggers,
foreign keys) against a raw single-row INSERT of the same values into a plain copy of the
table (same columns and indexes, no triggers, no foreign keys). Each append is its own
transaction, as a request's audit record is."""
import time
import uuid

from django.db import connection

from audit.models import AuditRecord
from audit.services import AuditEvent, AuditResult, audit_record

RAW_TABLE = "bench_raw_audit"


def _sample(integration):
    return {
        "event_type": AuditEvent.API_REQUEST, "result": AuditResult.SUCCESS, "tenant": integration.tenant,
        "integration": integration, "actor": integration.auth_client_id, "client_id": integration.auth_client_id,
        "request_id": uuid.uuid4().hex, "source_ip": "127.0.0.1", "verticals": ["health"], "status_code": 200,
        "details": {"method": "GET", "path": "/api/v1/persons/", "latency_ms": 4.2, "data_categories": ["birth_date", "id"],
                    "token": {"azp": integration.auth_client_id, "exp": 1700000000, "iat": 1699999700},
                    "consent": {"checked": "in_effect filter", "allowed": 100}},
    }


def measure(integration, *, appends):
    sample = _sample(integration)
    service = _timed(appends, lambda: audit_record(**sample))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        cursor.execute(f"CREATE TABLE {RAW_TABLE} (LIKE {AuditRecord._meta.db_table} INCLUDING ALL)")
    try:
        row = AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST).order_by("-id").first()
        columns = [f.column for f in AuditRecord._meta.concrete_fields if f.column != "id"]
        values = [f.get_db_prep_save(getattr(row, f.attname), connection) for f in AuditRecord._meta.concrete_fields
                  if f.column != "id"]
        sql = f"INSERT INTO {RAW_TABLE} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"

        def insert():
            with connection.cursor() as cursor:
                cursor.execute(sql, values)

        raw = _timed(appends, insert)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    return {"appends": appends, "service": service, "raw_insert": raw}


def _timed(count, operation):
    """Rate (ops/s) and per-operation latencies (ms) of `count` calls in autocommit."""
    for _ in range(min(50, count)):  # warm-up
        operation()
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        operation()
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rate": count / elapsed, "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "latencies_ms": latencies}
