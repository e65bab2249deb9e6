"""The embedded default (`make run`: SQLite, eager tasks) keeps working where the code takes
a PostgreSQL-only fast path: the audit append and the batch import."""
import os
import subprocess
import sys

from django.conf import settings

SCRIPT = """
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from audit.models import AuditRecord
from audit.services import audit_record
from exchange import batch
from exchange.models import ImportJob
from registry.models import Integration, IntegrationTemplate, Partner
from scp_core.models import Person, Tenant, Vertical
ke, health = Tenant.objects.get(code="ke"), Vertical.objects.get(code="health")
root = get_user_model().objects.get(username="root")
template = IntegrationTemplate.objects.get(slug="health-records-basic", version=1)
integration = Integration.objects.create(tenant=ke, partner=Partner.objects.get(slug="acme-health"), integration_name="embedded",
                                         template=template, data_contract=template.data_contract, created_by=root)
integration.verticals.set([health])
draft_job = batch.import_store(integration=integration, vertical=health, record_type="immunization",
                               upload=SimpleUploadedFile("rows.csv", b"person_id,vaccine,dose,date\\n"))
print("draft import", batch.run_import(draft_job.pk), ImportJob.objects.get(pk=draft_job.pk).error.split(":")[0])
Integration.objects.filter(pk=integration.pk).update(status="active")  # test setup: as if walked to Active
integration.refresh_from_db()
audit_record(event_type="api.request", tenant=ke, integration=integration, actor_user=root, details={"bad": "x\\x00"})
record = AuditRecord.objects.order_by("-id").first()
print("audit", record.integration_id == integration.pk, record.actor, record.details["bad"] == "x\\ufffd")
person = Person.objects.in_tenant(ke).with_consent_in_effect(health).first()
upload = SimpleUploadedFile("rows.csv", f"person_id,vaccine,dose,date\\n{person.pk},OPV,1,2026-01-01\\n{person.pk},OPV,0,x\\n".encode())
job = batch.import_store(integration=integration, vertical=health, record_type="immunization", upload=upload)
job_status = batch.run_import(job.pk)
job.refresh_from_db()
print("import", job_status, job.rows_failed)
"""


def test_audit_append_and_import_work_on_the_embedded_sqlite_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SCP_", "DATABASE_", "CELERY_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DJANGO_SETTINGS_MODULE="scp_portal.settings",
               SCP_IMPORT_DIR=str(tmp_path / "imports"))

    def manage(*args):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    manage("migrate", "-v", "0")
    manage("seed_demo", "--persons", "20")
    out = manage("shell", "-c", SCRIPT)
    assert "audit True root True" in out
    assert "draft import failed integration_not_active" in out  # a Draft integration imports nothing
    assert "import completed 1" in out
