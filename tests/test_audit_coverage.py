"""Issue #15 §1: every release and every failure lands in the chained audit log: webhook
attempts (with their outcome), connector failures and staff views of persons' data in the
portal. They are exported and verified like every record, and tampering with one is found."""
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.chain import PLATFORM_CHAIN, seal_chain
from audit.models import AuditEvent, AuditRecord, AuditResult
from audit.retention import purge_platform
from audit.services import audit_record
from audit.signing import RetiredKey, public_key_b64
from exchange import webhooks
from exchange.connectors import connector_run
from exchange.events import emit
from exchange.models import Connector, Delivery, EventType, Subscription
from scp_core.models import ConsentStatus

from .conftest import make_person
from .exchange_helpers import activate
from .receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
VERIFIER = Path(django_settings.BASE_DIR) / "audit" / "verifier" / "scp_audit_verify.py"


def _verify_export(tmp_path, tenant):
    out = tmp_path / f"export-{tenant.code}"
    call_command("audit_export", "--tenant", tenant.code, "--out", str(out))
    try:
        call_command("audit_verify", str(out))
    except CommandError as exc:
        return out, str(exc)
    return out, "OK"


def _tamper(record, sql_set):
    db = connection.settings_dict["NAME"]
    script = f"SET session_replication_role = replica; UPDATE audit_auditrecord SET {sql_set} WHERE id = {record.pk};"
    subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -q -d {db} -p {connection.settings_dict['PORT'] or 5432}"],
                   input=script.encode(), check=True, capture_output=True)


@pytest.fixture
def partner(staff, demo, keycloak_clients):
    return activate(staff, demo, keycloak_clients, name="audited")


def test_each_webhook_attempt_is_in_the_chain_and_tampering_with_it_is_found(partner, demo, tmp_path):
    person = make_person(demo["ke"], "AUD-1", [(demo["health"], ConsentStatus.GRANTED)])
    with Receiver(statuses=[503]) as receiver:
        receiver.secret = webhooks.new_secret()
        Subscription.objects.create(integration=partner.integration, url=receiver.url, event_types=["record.created"],
                                    secret=receiver.secret)
        emit(event_type=EventType.RECORD_CREATED, tenant=demo["ke"], vertical=demo["health"], person_id=person.pk,
             integration=partner.integration,
             data={"record_id": "r-1", "person_id": str(person.pk), "record_type": "immunization"})
        delivery = Delivery.objects.get()
        webhooks.deliver(delivery.pk)  # 503: a failed attempt
        webhooks.deliver(delivery.pk, now=timezone.now() + datetime.timedelta(hours=1))  # the retry: 200
    attempts = list(AuditRecord.objects.filter(event_type=AuditEvent.WEBHOOK_ATTEMPT).order_by("id"))
    assert [(a.result, a.status_code) for a in attempts] == [(AuditResult.FAILURE, 503), (AuditResult.SUCCESS, 200)]
    assert attempts[0].details["person_id"] == str(person.pk) and attempts[0].details["endpoint_host"] == "127.0.0.1"
    assert attempts[0].tenant_id == demo["ke"].pk and attempts[0].integration_id == partner.integration.pk
    out, verdict = _verify_export(tmp_path, demo["ke"])
    assert verdict == "OK"
    assert '"webhook.attempt"' in (out / "records.jsonl").read_text()
    # An insider rewrites the failed attempt as a success: the chain says so, naming the record.
    _tamper(attempts[0], "result = 'success', status_code = 200")
    _out, verdict = _verify_export(tmp_path / "again", demo["ke"])
    assert verdict != "OK" and str(attempts[0].pk) in verdict


def test_a_connector_failure_is_in_the_chain(partner, demo, tmp_path):
    connector = Connector.objects.create(integration=partner.integration, name="clinic", adapter="csv_file",
                                         source=str(tmp_path / "missing.csv"), vertical=demo["health"],
                                         record_type="immunization")
    connector_run(connector)  # the partner's file is not there: an outage
    drift = tmp_path / "drift.csv"
    drift.write_text("external_id,person_id,vaccine\nx,y,BCG\n")
    Connector.objects.filter(pk=connector.pk).update(source=str(drift))
    connector_run(Connector.objects.get(pk=connector.pk))  # a row that does not match the contract
    failures = AuditRecord.objects.filter(event_type=AuditEvent.CONNECTOR_RUN, result=AuditResult.FAILURE).order_by("id")
    assert [f.error_code for f in failures] == ["partner_unavailable", "schema_drift"]
    _out, verdict = _verify_export(tmp_path, demo["ke"])
    assert verdict == "OK"


def test_staff_looking_at_persons_in_the_portal_leave_a_trace(client, staff, demo):
    person = make_person(demo["ke"], "AUD-VIEW", [(demo["health"], ConsentStatus.GRANTED)], family_name="Lookedat")
    client.force_login(staff["ke-admin"])
    assert b"Lookedat" in client.get(reverse("admin:scp_core_person_changelist")).content
    assert client.get(reverse("admin:scp_core_person_change", args=[person.pk])).status_code == 200
    client.get(reverse("admin:scp_core_consent_changelist"))
    views = AuditRecord.objects.filter(event_type=AuditEvent.PORTAL_PERSON_VIEWED).order_by("id")
    assert [v.details["screen"] for v in views] == ["person list", "person detail", "consent list"]
    assert all(v.actor == "ke-admin" and v.tenant_id == demo["ke"].pk and str(person.pk) in v.details["persons"]
               for v in views)


@pytest.mark.django_db(transaction=True, databases=["default", "purge"])  # the purge role
def test_the_platform_chain_is_exported_verified_and_retained_like_a_tenants(tmp_path, settings, demo):
    # Failed logins from three addresses: they name no tenant, so they are the platform's.
    for n in range(3):
        Client(HTTP_X_REAL_IP=f"10.66.0.{n}", HTTP_AUTHORIZATION="Bearer forged").get("/api/v1/persons/?vertical=health")
    platform = AuditRecord.objects.filter(tenant__isnull=True, status_code=401)
    assert platform.count() == 3
    out = tmp_path / "platform"
    call_command("audit_export", "--platform", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chain"] == PLATFORM_CHAIN and manifest["tenant"] is None and manifest["count"] >= 3
    call_command("audit_verify", str(out))
    call_command("audit_verify", "--platform")
    standalone = subprocess.run([sys.executable, "-I", str(VERIFIER), str(out)], capture_output=True, text=True)
    assert standalone.returncode == 0, standalone.stdout + standalone.stderr
    # Its own retention: whole sealed segments go, and the chain still verifies from its anchor.
    settings.SCP_PLATFORM_AUDIT_RETENTION_DAYS = 1
    assert purge_platform(now=timezone.now() + datetime.timedelta(days=2)) >= 3
    assert not platform.exists()
    call_command("audit_verify", "--platform")


def test_a_chain_signed_before_and_after_a_key_rotation_verifies_with_both_keys_and_with_neither_alone(
        tmp_path, settings, demo):
    def write(n):
        for i in range(n):
            audit_record(event_type=AuditEvent.API_REQUEST, tenant=demo["ke"], actor=f"client-{i}", status_code=200)

    write(3)
    seal_chain("ke")
    old_key = public_key_b64()
    key_file = tmp_path / "new-audit-key"
    call_command("audit_rotate_key", "--new-key-file", str(key_file))
    assert AuditRecord.objects.filter(event_type=AuditEvent.AUDIT_KEY_ROTATED).exists()
    write(1)
    with pytest.raises(RetiredKey):  # until the restart, the retired key signs nothing
        seal_chain("ke")
    settings.SCP_AUDIT_SIGNING_KEY = key_file.read_text().strip()  # "restarted" with the new key
    new_key = public_key_b64()
    assert new_key != old_key
    write(2)
    out = tmp_path / "ke"
    call_command("audit_export", "--tenant", "ke", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {c["key_id"] for c in manifest["checkpoints"]} == {k["key_id"] for k in manifest["keys"]}
    assert len(manifest["keys"]) == 2

    def standalone(*keys):
        args = [arg for key in keys for arg in ("--public-key", key)]
        return subprocess.run([sys.executable, "-I", str(VERIFIER), str(out), *args], capture_output=True, text=True)

    assert standalone(old_key, new_key).returncode == 0
    for alone in (old_key, new_key):
        result = standalone(alone)
        assert result.returncode == 1 and "not among the published keys" in result.stdout
    # Live and local verification trust the configured keys only, never the database's register:
    # until the old key is published in the configuration, its checkpoints do not verify.
    with pytest.raises(CommandError):
        call_command("audit_verify", "--tenant", "ke", "--no-seal")
    settings.SCP_AUDIT_PUBLISHED_KEYS = [old_key]
    call_command("audit_verify", str(out))
    call_command("audit_verify", "--tenant", "ke", "--no-seal")
