"""Batch imports (issue #6) with a real Celery worker on Redis: a 200,000-row import whose
worker is killed with SIGKILL midway resumes by itself and ends with exactly 200,000 rows."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from exchange.batch import CHUNK_ROWS, import_store, run_import
from exchange.models import ImportJob, ImportStatus
from scp_core.models import ConsentStatus, Person, VerticalRecord

from .conftest import make_person
from .exchange_helpers import activate
from .worker import Worker, purge_queue, wait_until, worker_env

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = 200_000


def _csv(persons, rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["person_id", "vaccine", "dose", "date"])
    for i in range(rows):
        writer.writerow([persons[i % len(persons)], "OPV", 1 + i % 4, "2026-05-17"])
    return out.getvalue().encode()


def _upload(api, partner, content, name="rows.csv"):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    return api.post("/api/v1/imports/", {"file": SimpleUploadedFile(name, content), "vertical": "health",
                                         "record_type": "immunization"}, format="multipart")


def test_sigkilled_import_resumes_by_itself_without_losing_or_duplicating_rows(api, staff, demo, keycloak_clients, tmp_path, settings):
    settings.SCP_IMPORT_DIR = str(tmp_path / "imports")
    partner = activate(staff, demo, keycloak_clients, name="bulk")
    persons = [str(make_person(demo["ke"], f"4400{i:04d}", [(demo["health"], ConsentStatus.GRANTED)]).pk) for i in range(200)]
    env = worker_env(SCP_IMPORT_DIR=settings.SCP_IMPORT_DIR, SCP_IMPORT_STALE_SECONDS=4, SCP_IMPORT_SWEEP_SECONDS=1)
    purge_queue(env)
    first = Worker(env, tmp_path, "first")
    try:
        response = _upload(api, partner, _csv(persons, ROWS))
        assert response.status_code == 202, response.content
        job_id = response.json()["id"]
        assert response.json()["rows_total"] == ROWS

        def done():
            return ImportJob.objects.get(pk=job_id).rows_done

        wait_until(lambda: done() >= 30_000, 180, "the first worker to get going")
        first.kill()  # SIGKILL, midway
        killed_at = done()
        assert 0 < killed_at < ROWS
        second = Worker(env, tmp_path, "second")
        try:
            wait_until(lambda: ImportJob.objects.get(pk=job_id).status == ImportStatus.COMPLETED, 300, "the resumed import")
        finally:
            second.stop()
    finally:
        first.kill()
    job = ImportJob.objects.get(pk=job_id)
    assert job.rows_done == ROWS and job.rows_failed == 0
    records = VerticalRecord.objects.filter(import_key__startswith=f"{job_id}:")
    assert records.count() == ROWS
    assert records.values("import_key").distinct().count() == ROWS
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    status = api.get(f"/api/v1/imports/{job_id}/").json()
    assert status["status"] == "completed" and status["rows_done"] == ROWS


def test_rows_are_validated_and_errors_reported_per_row(api, staff, demo, keycloak_clients, tmp_path, settings):
    settings.SCP_IMPORT_DIR = str(tmp_path / "imports")
    partner = activate(staff, demo, keycloak_clients, name="small")
    ok = make_person(demo["ke"], "44000001", [(demo["health"], ConsentStatus.GRANTED)])
    withdrawn = make_person(demo["ke"], "44000002", [(demo["health"], ConsentStatus.WITHDRAWN)])
    ug = make_person(demo["ug"], "44000003", [(demo["health"], ConsentStatus.GRANTED)])
    content = (
        "person_id,vaccine,dose,date\n"
        f"{ok.pk},BCG,1,2026-01-02\n"
        f"{ok.pk},BCG,zero,2026-01-02\n"
        f"{withdrawn.pk},BCG,1,2026-01-02\n"
        f"{ug.pk},BCG,1,2026-01-02\n"
        "not-a-uuid,BCG,1,2026-01-02\n"
    ).encode()
    response = _upload(api, partner, content)
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert run_import(job_id) == ImportStatus.COMPLETED  # the task body, run here
    job = ImportJob.objects.get(pk=job_id)
    assert (job.rows_total, job.rows_done, job.rows_failed) == (5, 5, 4)
    assert VerticalRecord.objects.filter(import_key__startswith=f"{job_id}:").count() == 1
    report = api.get(f"/api/v1/imports/{job_id}/errors/").content.decode()
    assert "consent for this vertical is not in effect" in report and "no such person in this tenant" in report
    assert report.count("\n") >= 5
    # Resuming a completed job is refused; resuming is idempotent otherwise.
    assert api.post(f"/api/v1/imports/{job_id}/resume/").status_code == 409
    assert Person.objects.filter(pk=ug.pk).exists()


def test_schema_drift_and_bad_files_are_refused_before_anything_is_written(api, staff, demo, keycloak_clients, tmp_path, settings):
    settings.SCP_IMPORT_DIR = str(tmp_path / "imports")
    partner = activate(staff, demo, keycloak_clients, name="drift")
    response = _upload(api, partner, b"person_id,vaccine,doses,date\n")
    assert response.status_code == 422 and response.json()["code"] == "contract_violation"
    response = _upload(api, partner, b"x", name="rows.xlsx")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    settings.SCP_MAX_IMPORT_BYTES = 10
    response = _upload(api, partner, b"person_id,vaccine,dose,date\n" + b"x" * 100)
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert not ImportJob.objects.exists()


@pytest.mark.django_db  # inside the test's transaction: each chunk's transaction is a savepoint
def test_an_import_of_several_chunks_inside_an_outer_transaction_writes_every_row_once(staff, demo, keycloak_clients,
                                                                                      tmp_path, settings):
    settings.SCP_IMPORT_DIR = str(tmp_path)
    partner = activate(staff, demo, keycloak_clients, name="nested")
    person = str(make_person(demo["ke"], "45000000", [(demo["health"], ConsentStatus.GRANTED)]).pk)
    rows = CHUNK_ROWS + 500
    job = import_store(integration=partner.integration, vertical=demo["health"], record_type="immunization",
                       upload=SimpleUploadedFile("rows.csv", _csv([person], rows)))
    assert run_import(job.pk) == ImportStatus.COMPLETED
    job.refresh_from_db()
    assert (job.rows_done, job.rows_failed) == (rows, 0)
    assert VerticalRecord.objects.filter(import_key__startswith=f"{job.pk}:").count() == rows
