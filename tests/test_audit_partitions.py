"""Issue #12 item 6: the audit records partitioned by month in PostgreSQL. An append lands in its
month's partition, created ahead, or in the DEFAULT partition, never failing; retention drops
whole expired months and the chain verifies from its signed anchor, live, exported and with the
standalone verifier; no role but the owner drops, detaches or empties a partition, and the purge
role drops a month only through the retention's function, only when nothing in it is still
part of a chain."""
import datetime
import io
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit import ledger, partitions
from audit.chain import seal_chain, verify_chain
from audit.models import AuditCheckpoint, AuditEvent, AuditRecord, AuditSeal, Disclosure
from audit.retention import purge_tenant
from audit.services import audit_record
from registry.models import Integration, IntegrationTemplate, Partner
from .test_database_roles import Refused, _connect

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "purge"])
VERIFIER = Path(settings.BASE_DIR) / "audit" / "verifier" / "scp_audit_verify.py"


def _months_back(n):
    month = partitions.month_start(timezone.now())
    for _ in range(n):
        month = (month - datetime.timedelta(days=1)).replace(day=1)
    return month


def _name(month):
    return f"audit_auditrecord_y{month:%Y}m{month:%m}"


def _partition_of(record):
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_auditrecord WHERE id = %s", [record.pk])
        return cursor.fetchone()[0]


def _exists(name):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def _integration(tenant):
    template = IntegrationTemplate.objects.get(slug="health-records-basic", version=1)
    return Integration.objects.create(tenant=tenant, partner=Partner.objects.get(slug="acme-health"),
                                      integration_name="partitions", template=template,
                                      data_contract=template.data_contract,
                                      created_by=get_user_model().objects.get(username="root"))


def _old_record(tenant, when, integration=None, n=0):
    """A record of an earlier month, with a disclosure the record commits to when `integration` is given."""
    release = None
    details = {"n": n}
    if integration is not None:
        release = {"integration": integration.pk, "tenant_id": tenant.pk, "partner": "acme-health", "vertical": "health",
                   "purpose_code": "", "channel": "api_list", "fields": {"id": "plain"}, "contract_version": "v1",
                   "person_ids": [f"p-{n}"]}
        details["disclosures"] = ledger.commitment([release])
    record = AuditRecord.objects.create(event_type=AuditEvent.API_REQUEST, tenant=tenant, occurred_at=when,
                                        result="success", actor=f"client-{n}", details=details)
    if release is not None:
        Disclosure.objects.create(record=record, disclosed_at=when, tenant=tenant, integration=integration,
                                  partner=release["partner"], vertical="health", channel="api_list",
                                  fields=release["fields"], contract_version="v1", person_ids=release["person_ids"])
    return record


def test_an_append_lands_in_its_months_partition_created_ahead_or_in_the_default_partition(demo):
    ke = demo["ke"]
    # Created ahead by the application role itself (the beat task runs as it), through the function.
    far = partitions.month_start(timezone.now() + datetime.timedelta(days=400))
    assert partitions.ensure(first=far, last=far) == [_name(far)]
    assert partitions.ensure(first=far, last=far) == []  # once
    ahead = _old_record(ke, far + datetime.timedelta(days=3, hours=5))
    assert _partition_of(ahead) == _name(far)
    # This month's partition exists from the migration and the beat task on; a request's append lands in it.
    audit_record(event_type=AuditEvent.API_REQUEST, tenant=ke, actor="client-0", status_code=200)
    assert _partition_of(AuditRecord.objects.latest("id")) == _name(partitions.month_start(timezone.now()))
    # A month nobody created: the DEFAULT partition takes the append, which never fails.
    stray = _old_record(ke, far + datetime.timedelta(days=300))
    assert _partition_of(stray) == partitions.DEFAULT_PARTITION
    # Its month can no longer be created (its row would have to move); it stays in the default.
    stray_month = partitions.month_start(stray.occurred_at)
    assert partitions.ensure(first=stray_month, last=stray_month) == []
    # Every partition, made later or not, is append-only, even for the owner.
    with _connect("owner") as owner:
        for sql in (f"UPDATE {_name(far)} SET actor = 'x'", f"DELETE FROM {_name(far)}",
                    f"TRUNCATE {_name(far)} CASCADE", f"TRUNCATE {partitions.DEFAULT_PARTITION} CASCADE"):
            with pytest.raises(Refused, match="append-only"):
                owner.execute(sql)
    seal_chain("ke")
    assert verify_chain("ke") == 3


def test_the_application_creates_months_only_within_two_years_either_side_of_now(demo):
    beyond = partitions.month_start(timezone.now() + datetime.timedelta(days=800))
    long_ago = partitions.month_start(timezone.now() - datetime.timedelta(days=800))
    before = partitions.monthly()
    with _connect("application") as app:
        for first, last in ((beyond, beyond), (long_ago, long_ago), (timezone.now(), beyond),
                            (beyond - datetime.timedelta(days=60), beyond - datetime.timedelta(days=90))):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="from 24 back to 24 ahead"):
                app.execute("SELECT scp_audit_ensure_partitions(%s, %s)", [first, last])
        # The unchecked function it calls is the owner's alone.
        with pytest.raises(Refused, match="permission denied"):
            app.execute("SELECT scp_audit_create_partitions(%s, %s)", [beyond, beyond])
    assert partitions.monthly() == before
    with pytest.raises(CommandError, match="from 24 back to 24 ahead"):
        call_command("audit_partitions", "--months-ahead", "40")
    # Within the range, by month: this month alone (asked for as now, through its first instant),
    # and the month 24 back asked for by any instant of it.
    call_command("audit_partitions", "--months-ahead", "0", stdout=io.StringIO())
    back = partitions.month_start(timezone.now())
    for _ in range(24):
        back = partitions.month_start(back - datetime.timedelta(days=1))
    try:
        assert partitions.ensure(first=back + datetime.timedelta(days=3), last=back) == [_name(back)]
    finally:  # partitions outlive the test's flush: an empty expired month would be the next purge's
        with _connect("owner") as owner:
            if owner.execute("SELECT to_regclass(%s)", [_name(back)]).fetchone()[0]:
                owner.execute(f"ALTER TABLE audit_auditrecord DETACH PARTITION {_name(back)}")
                owner.execute(f"DROP TABLE {_name(back)}")


def test_no_role_but_the_owner_drops_detaches_or_empties_a_partition_and_the_purge_only_through_retention(demo):
    ke = demo["ke"]
    month = _months_back(3)
    partitions.ensure(first=month, last=month)
    record = _old_record(ke, month + datetime.timedelta(days=2))
    seal_chain("ke")
    name = _name(month)
    with _connect("application") as app:
        app.execute("SET scp.audit_maintenance = 'on'")  # the purge's flag opens triggers, not rights
        for sql in (f"DROP TABLE {name}", f"ALTER TABLE audit_auditrecord DETACH PARTITION {name}",
                    f"TRUNCATE {name}", f"DELETE FROM {name}", f"UPDATE {name} SET actor = 'x'",
                    f"SELECT count(*) FROM {name}",  # rows are read through the parent only
                    f"SELECT scp_audit_drop_partition('{name}')"):
            with pytest.raises(Refused):
                app.execute(sql)
    with _connect("purge") as purge:
        for sql in (f"DROP TABLE {name}", f"ALTER TABLE audit_auditrecord DETACH PARTITION {name}",
                    f"TRUNCATE {name}", f"ALTER TABLE {name} DISABLE TRIGGER ALL"):
            with pytest.raises(Refused):
                purge.execute(sql)
        # The function: only in the purge's maintenance transaction,
        with pytest.raises(Refused, match="only by the retention purge"):
            purge.execute(f"SELECT scp_audit_drop_partition('{name}')")
        with purge.transaction():
            purge.execute("SET LOCAL scp.audit_maintenance = 'on'")
            # only for a monthly partition of the audit records,
            for other in (partitions.DEFAULT_PARTITION, "audit_auditseal", "scp_core_person"):
                with pytest.raises(Refused, match="not a monthly partition"), purge.transaction():
                    purge.execute(f"SELECT scp_audit_drop_partition('{other}')")
            # and only once every record in it lies at or below its chain's anchor: here none does.
            assert purge.execute(f"SELECT scp_audit_drop_partition('{name}')").fetchone()[0] is None
    assert _exists(name) and AuditRecord.objects.filter(pk=record.pk).exists()
    assert verify_chain("ke") == 1


def test_retention_drops_whole_expired_months_and_the_chain_verifies_from_its_anchor(demo, tmp_path):
    ke, ug = demo["ke"], demo["ug"]
    integration = _integration(ke)
    older, old = _months_back(4), _months_back(3)
    partitions.ensure(first=older, last=old)
    # Given: ke's records in two expired months (with disclosures), ug's in the older one (ug
    # keeps its log forever), and ke's recent records.
    for n in range(4):
        _old_record(ke, older + datetime.timedelta(days=1, minutes=n), integration, n)
    _old_record(ug, older + datetime.timedelta(days=2))
    seal_chain("ke")
    seal_chain("ug")
    for n in range(4, 9):
        _old_record(ke, old + datetime.timedelta(days=1, minutes=n), integration, n)
    seal_chain("ke")
    for n in range(3):
        audit_record(event_type=AuditEvent.API_REQUEST, tenant=ke, actor=f"recent-{n}", status_code=200)
    seal_chain("ke")
    ke.audit_retention_days = 30
    ke.save()

    # When: the purge.
    assert purge_tenant(ke) == 9

    # Then: the month only ke held is dropped whole, with its disclosures; the month ug shares
    # stays, without ke's records (deleted one by one); ug's record is untouched.
    assert not _exists(_name(old)) and _exists(_name(older))
    assert not AuditRecord.objects.filter(tenant=ke, occurred_at__lt=old + datetime.timedelta(days=40)).exists()
    assert not Disclosure.objects.filter(tenant=ke).exists()
    assert AuditRecord.objects.filter(tenant=ug).count() == 1
    drop = AuditRecord.objects.get(event_type=AuditEvent.AUDIT_PURGED, tenant__isnull=True)
    assert drop.details == {"partition": _name(old), "records": {"ke": 5}}
    purged = AuditRecord.objects.get(event_type=AuditEvent.AUDIT_PURGED, tenant=ke)
    assert purged.details["records"] == 9 and purged.details["through_seq"] == 9
    anchor = AuditCheckpoint.objects.get(chain="ke", is_anchor=True)
    assert anchor.seq == 9 and AuditSeal.objects.filter(chain="ke").order_by("seq").first().seq == 10
    # The chain verifies from its anchor: live, exported, standalone.
    call_command("audit_verify", "--tenant", "ke")
    assert verify_chain("ke") == 4  # 3 recent records + the purge's own
    call_command("audit_verify", "--tenant", "ug")
    call_command("audit_verify", "--platform")
    out = tmp_path / "export"
    call_command("audit_export", "--tenant", "ke", "--out", str(out))
    call_command("audit_verify", str(out))
    standalone = subprocess.run([sys.executable, "-I", str(VERIFIER), str(out)], capture_output=True, text=True)
    assert standalone.returncode == 0, standalone.stdout

    # Once ug's log has a retention too, the shared month goes whole as well.
    ug.audit_retention_days = 30
    ug.save()
    assert purge_tenant(ug) == 1
    assert not _exists(_name(older))
    call_command("audit_verify", "--tenant", "ug")
