"""The tamper-evident audit trail (issue #5): append-only in PostgreSQL, a per-tenant hash
chain with signed checkpoints, tampering detected and located live and in exports by
audit_verify and by the standalone verifier alike, retention from a signed anchor, and
concurrent writers that neither fork the chain nor lose a record."""
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from audit.chain import seal_chain, verify_chain
from audit.models import AuditCheckpoint, AuditRecord, AuditSeal, Incident, IncidentKind
from audit.retention import purge_tenant
from audit.services import AuditEvent, audit_record

pytestmark = pytest.mark.django_db(transaction=True)
VERIFIER = Path(settings.BASE_DIR) / "audit" / "verifier" / "scp_audit_verify.py"


def _records(tenant, n, **extra):
    after = AuditRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for i in range(n):
        audit_record(event_type=AuditEvent.API_REQUEST, tenant=tenant, actor=f"client-{i}", status_code=200,
                     verticals=["health"], details={"n": i, "latency_ms": 1.25 * i}, **extra)
    return list(AuditRecord.objects.filter(id__gt=after, tenant=tenant).order_by("id"))


def _superuser_sql(sql):
    """Run SQL as the PostgreSQL superuser with the triggers bypassed (an insider's attack)."""
    db = connection.settings_dict["NAME"]
    script = f"SET session_replication_role = replica; {sql}"
    subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -q -d {db} -p {connection.settings_dict['PORT'] or 5432}"],
                   input=script.encode(), check=True, capture_output=True)


def _verify_live(tenant):
    try:
        call_command("audit_verify", "--tenant", tenant.code, "--no-seal")
    except CommandError as exc:
        return str(exc)
    return "OK"


def _verify_export(directory):
    try:
        call_command("audit_verify", str(directory))
    except CommandError as exc:
        return str(exc)
    return "OK"


def _standalone(directory):
    result = subprocess.run([sys.executable, "-I", str(VERIFIER), str(directory)], capture_output=True, text=True)
    return result.returncode, result.stdout.strip()


def _export(tenant, directory):
    call_command("audit_export", "--tenant", tenant.code, "--out", str(directory))
    return directory


def test_an_untouched_chain_verifies_live_on_export_and_standalone(demo, tmp_path):
    _records(demo["ke"], 30)
    _records(demo["ug"], 5)
    assert seal_chain("ke") == 30
    assert _verify_live(demo["ke"]) == "OK"
    directory = _export(demo["ke"], tmp_path / "export")
    assert _verify_export(directory) == "OK"
    assert _standalone(directory)[0] == 0
    assert AuditCheckpoint.objects.filter(chain="ke").exists()
    # The export itself is audited.
    assert AuditRecord.objects.filter(event_type=AuditEvent.AUDIT_EXPORTED, tenant=demo["ke"]).exists()


@pytest.mark.parametrize("attack", ["change", "delete", "insert", "swap"])
def test_tampering_in_the_database_is_detected_and_located(attack, demo, tmp_path):
    first = _records(demo["ke"], 5)
    with connection.cursor() as cursor:  # leave a gap in the ids, as a rolled-back insert would
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditrecord', 'id'))")
        gap = cursor.fetchone()[0]
    rest = _records(demo["ke"], 5)
    seal_chain("ke")
    victim, other = first[2], rest[1]
    if attack == "change":
        _superuser_sql(f"UPDATE audit_auditrecord SET status_code = 500 WHERE id = {victim.pk};")
        bad = victim.pk
    elif attack == "delete":
        _superuser_sql(f"DELETE FROM audit_auditrecord WHERE id = {victim.pk};")
        bad = victim.pk
    elif attack == "insert":
        old = (timezone.now() - datetime.timedelta(days=1)).isoformat()
        _superuser_sql(
            "INSERT INTO audit_auditrecord (id, occurred_at, event_type, request_id, tenant_id, actor, client_id, "
            "verticals, result, error_code, details) "
            f"VALUES ({gap}, '{old}', 'api.request', '', {demo['ke'].pk}, 'forged', '', '[]', 'success', '', '{{}}');"
        )
        bad = gap
    else:  # swap the contents of two records
        _superuser_sql(
            f"UPDATE audit_auditrecord a SET actor = b.actor, details = b.details FROM audit_auditrecord b "
            f"WHERE (a.id, b.id) IN (({victim.pk}, {other.pk}), ({other.pk}, {victim.pk}));"
        )
        bad = victim.pk
    live = _verify_live(demo["ke"])
    assert live.startswith("FAILED") and f"record {bad} " in live, live
    assert Incident.objects.filter(kind=IncidentKind.VERIFICATION_FAILED, tenant=demo["ke"]).exists()
    if attack != "insert":  # an export holds sealed records only: the forged row is not in it
        directory = _export(demo["ke"], tmp_path / "export")
        exported = _verify_export(directory)
        code, standalone = _standalone(directory)
        assert exported.startswith("FAILED") and f"record {bad} " in exported, exported
        assert code == 1 and f"record {bad} " in standalone
        assert exported.removeprefix("FAILED: ") == standalone.removeprefix("FAILED: ")


@pytest.mark.parametrize("attack", ["change", "delete", "insert", "swap"])
def test_tampering_with_an_export_is_detected_by_both_verifiers(attack, demo, tmp_path):
    _records(demo["ke"], 8)
    directory = _export(demo["ke"], tmp_path / "export")
    path = directory / "records.jsonl"
    lines = path.read_text().splitlines()
    if attack == "change":
        lines[3] = lines[3].replace('"status_code":200', '"status_code":201')
    elif attack == "delete":
        del lines[3]
    elif attack == "insert":
        lines.insert(3, lines[2])
    else:
        lines[3], lines[4] = lines[4], lines[3]
    path.write_text("\n".join(lines) + "\n")
    exported = _verify_export(directory)
    code, standalone = _standalone(directory)
    assert exported.startswith("FAILED") and code == 1
    assert exported.removeprefix("FAILED: ") == standalone.removeprefix("FAILED: ")
    assert "line 4" in standalone  # the first bad record is named where it stands


@pytest.mark.django_db(transaction=True, databases=["default", "purge"])  # the purge role
def test_retention_purges_whole_segments_and_the_chain_verifies_from_its_anchor(demo, tmp_path):
    ke = demo["ke"]
    old = timezone.now() - datetime.timedelta(days=100)
    for i in range(6):
        AuditRecord.objects.create(event_type=AuditEvent.API_REQUEST, tenant=ke, occurred_at=old, result="success",
                                   details={"old": i})
    seal_chain("ke")  # segment 1 ends at seq 6
    _records(ke, 4)
    seal_chain("ke")
    ke.audit_retention_days = 30
    ke.save()
    assert purge_tenant(ke) == 6
    assert not AuditRecord.objects.filter(details__has_key="old").exists()
    anchor = AuditCheckpoint.objects.get(chain="ke", is_anchor=True)
    assert anchor.seq == 6 and AuditSeal.objects.filter(chain="ke").order_by("seq").first().seq == 7
    assert AuditRecord.objects.filter(event_type=AuditEvent.AUDIT_PURGED, tenant=ke).exists()
    seal_chain("ke")
    assert verify_chain("ke") == 5  # 4 records + the purge's own record
    directory = _export(ke, tmp_path / "after-purge")
    assert _standalone(directory)[0] == 0 and _verify_export(directory) == "OK"


WRITER = """
import django, os
django.setup()
from audit.chain import seal_chain
from audit.services import audit_record
from scp_core.models import Tenant
ke = Tenant.objects.get(code="ke")
for i in range(150):
    audit_record(event_type="api.request", tenant=ke, actor=f"w{os.getpid()}", details={"i": i})
    if i % 25 == 0:
        seal_chain("ke")
"""


def test_concurrent_writers_and_sealers_neither_fork_nor_lose_records(demo):
    params = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "scp_portal.settings", "DJANGO_DEBUG": "true",
           "DATABASE_URL": f"postgres://{params['USER']}:{params['PASSWORD']}@{params['HOST']}:{params['PORT']}/{params['NAME']}"}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER], cwd=settings.BASE_DIR, env=env) for _ in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    seal_chain("ke")
    records = AuditRecord.objects.filter(tenant=demo["ke"]).count()
    assert records == 600
    seqs = list(AuditSeal.objects.filter(chain="ke").order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, records + 1))  # one seal per record, no fork, no gap
    assert verify_chain("ke") == records
