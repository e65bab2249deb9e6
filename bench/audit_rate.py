"""Audit append rate: the audit service's append against a raw single-row INSERT of the same
values into the same table (so the same indexes and the same size of table), each in its own
transaction as a request's audit record is. The two run in alternating blocks, so that drift
of the machine or of the table's size during the run affects both alike."""
import time
import uuid

from django.db import connection

from audit.models import AuditRecord
from audit.services import AuditEvent, AuditResult, audit_record

BLOCKS = 10


def _sample(integration):
    return {
        "event_type": AuditEvent.API_REQUEST, "result": AuditResult.SUCCESS, "tenant": integration.tenant,
        "integration": integration, "actor": integration.auth_client_id, "client_id": integration.auth_client_id,
        "request_id": uuid.uuid4().hex, "source_ip": "127.0.0.1", "verticals": ["health"], "status_code": 200,
        "details": {"method": "GET", "path": "/api/v1/persons/", "latency_ms": 4.2, "data_categories": ["birth_date", "id"],
                    "token": {"azp": integration.auth_client_id, "exp": 1700000000, "iat": 1699999700},
                    "consent": {"checked": "in_effect filter", "allowed": 100}},
    }


def _raw_insert(row):
    """The same record's values, already adapted, in a hand-written INSERT."""
    fields = [f for f in AuditRecord._meta.concrete_fields if f.column != "id"]
    sql = (f"INSERT INTO {AuditRecord._meta.db_table} ({', '.join(f.column for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    values = [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]

    def insert():
        with connection.cursor() as cursor:
            cursor.execute(sql, values)

    return insert


def measure(integration, *, appends):
    sample = _sample(integration)
    audit_record(**sample)
    operations = {
        "service": lambda: audit_record(**sample),
        "raw_insert": _raw_insert(AuditRecord.objects.order_by("-id").first()),
    }
    for operation in operations.values():  # warm-up
        for _ in range(min(50, appends)):
            operation()
    latencies = {name: [] for name in operations}
    elapsed = dict.fromkeys(operations, 0.0)
    block = max(1, appends // BLOCKS)
    for _ in range(BLOCKS):
        for name, operation in operations.items():
            for _ in range(block):
                t = time.perf_counter()
                operation()
                latencies[name].append((time.perf_counter() - t) * 1000)
            elapsed[name] += sum(latencies[name][-block:]) / 1000
    return {"appends": block * BLOCKS, **{name: _summary(latencies[name], elapsed[name]) for name in operations}}


def _summary(latencies, seconds):
    latencies = sorted(latencies)
    return {"rate": len(latencies) / seconds, "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "latencies_ms": latencies}
