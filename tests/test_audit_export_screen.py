"""The auditor's export screen: tenant and period chosen in the portal, progress shown,
the result downloadable and verifiable offline."""
import io
import subprocess
import sys
import zipfile

import pytest
from django.urls import reverse

from audit.models import AuditExportJob, ExportStatus
from audit.services import AuditEvent, audit_record
from audit.tasks import run_audit_export_task

pytestmark = pytest.mark.django_db(transaction=True)


def test_auditor_exports_a_tenant_period_and_the_download_verifies(client, staff, demo, tmp_path, settings):
    settings.SCP_EXPORT_DIR = str(tmp_path / "exports")
    for i in range(12):
        audit_record(event_type=AuditEvent.API_REQUEST, tenant=demo["ke"], actor=f"c{i}", status_code=200)
    client.force_login(staff["auditor"])
    response = client.post(reverse("admin:audit_auditexportjob_add"), {"tenant": demo["ke"].pk, "since": "", "until": ""})
    assert response.status_code == 302, response.content[:500]
    job = AuditExportJob.objects.get()
    assert job.requested_by == staff["auditor"]
    # The worker's part (this suite has no worker for this queue): the task body, for real.
    run_audit_export_task(job.pk)
    progress = client.get(reverse("admin:audit_auditexportjob_progress", args=[job.pk])).json()
    assert progress["status"] == ExportStatus.COMPLETED and progress["percent"] == 100 and progress["total"] >= 12
    page = client.get(reverse("admin:audit_auditexportjob_change", args=[job.pk]))
    assert b'id="export-bar"' in page.content
    download = client.get(reverse("admin:audit_auditexportjob_download", args=[job.pk]))
    assert download.status_code == 200
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).extractall(folder)
    verifier = settings.BASE_DIR / "audit" / "verifier" / "scp_audit_verify.py"
    result = subprocess.run([sys.executable, "-I", str(verifier), str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_tenant_admin_exports_only_their_own_tenant(client, staff, demo, tmp_path, settings):
    settings.SCP_EXPORT_DIR = str(tmp_path / "exports")
    client.force_login(staff["ke-admin"])
    response = client.post(reverse("admin:audit_auditexportjob_add"), {"tenant": demo["ug"].pk})
    assert response.status_code == 200 and not AuditExportJob.objects.exists()  # the form refuses it
    client.force_login(staff["ke-health-owner"])
    assert client.get(reverse("admin:audit_auditexportjob_add")).status_code == 403
