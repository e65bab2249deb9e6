"""Batch jobs with a real Celery worker on Redis: a 200,000-row import whose worker is killed
with SIGKILL midway resumes by itself and ends with exactly 200,000 rows; so does an export
(issue #15); a job that fails the same way twice ends failed and says why."""
import csv
import io
import json

import pytest
from django.db import connection
from django.core.files.uploadedfile import SimpleUploadedFile

from exchange import batch
from exchange.batch import CHUNK_ROWS, import_store, run_import
from exchange.jobs import requeue_stalled
from exchange.models import Event, ExportJob, ImportJob, ImportRowError, ImportStatus
from lifecycle.demo import seed_persons
from scp_core.models import ConsentStatus, Person, VerticalRecord
from scp_portal.monitoring import compliance

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
        f"{str(ok.pk).upper()},OPV,2,2026-01-03\n"  # the person's id in another spelling
    ).encode()
    response = _upload(api, partner, content)
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert run_import(job_id) == ImportStatus.COMPLETED  # the task body, run here
    job = ImportJob.objects.get(pk=job_id)
    assert (job.rows_total, job.rows_done, job.rows_failed) == (6, 6, 4)
    written = VerticalRecord.objects.filter(import_key__startswith=f"{job_id}:")
    assert sorted(written.values_list("import_key", "person_id", "data__dose")) == [
        (f"{job_id}:1", ok.pk, 1), (f"{job_id}:6", ok.pk, 2)]
    assert sorted(ImportRowError.objects.filter(job_id=job_id).values_list("line", flat=True)) == [2, 3, 4, 5]
    # The chunk's event lists exactly the records written, in line order.
    event = Event.objects.get(event_type="records.imported", data__import_job=str(job_id))
    assert event.data["records"] == [{"record_id": str(written.get(import_key=f"{job_id}:{line}").pk), "person_id": str(ok.pk)}
                                     for line in (1, 6)]
    assert event.data["lines"] == [1, 6]
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


@pytest.mark.django_db  # inline: the chunk that fails is rolled back whole, the rerun writes each row once
def test_a_chunk_failing_after_its_insert_leaves_nothing_and_the_rerun_writes_and_announces_each_row_once(
        staff, demo, keycloak_clients, tmp_path, settings, monkeypatch):
    settings.SCP_IMPORT_DIR = str(tmp_path)
    partner = activate(staff, demo, keycloak_clients, name="half")
    persons = [str(make_person(demo["ke"], f"4700{i:04d}", [(demo["health"], ConsentStatus.GRANTED)]).pk) for i in range(3)]
    rows = 3 * CHUNK_ROWS
    job = import_store(integration=partner.integration, vertical=demo["health"], record_type="immunization",
                       upload=SimpleUploadedFile("rows.csv", _csv(persons, rows)))
    real, calls = batch._insert_records, []

    def fails_on_the_second_chunk(job, records):
        written = real(job, records)  # the rows are in the table (uncommitted) ...
        calls.append(len(records))
        if len(calls) == 2:
            raise RuntimeError("worker lost after the second chunk's INSERT")  # ... and the chunk fails
        return written

    monkeypatch.setattr(batch, "_insert_records", fails_on_the_second_chunk)
    assert run_import(job.pk) == ImportStatus.QUEUED  # the first failure: tried again
    job.refresh_from_db()
    records = VerticalRecord.objects.filter(import_key__startswith=f"{job.pk}:")
    assert (job.next_line, job.rows_done, records.count()) == (CHUNK_ROWS + 1, CHUNK_ROWS, CHUNK_ROWS)
    monkeypatch.setattr(batch, "_insert_records", real)
    assert run_import(job.pk) == ImportStatus.COMPLETED
    job.refresh_from_db()
    assert (job.rows_done, job.rows_failed, records.count()) == (rows, 0, rows)
    assert records.values("import_key").distinct().count() == rows
    events = Event.objects.filter(event_type="records.imported", data__import_job=str(job.pk)).order_by("id")
    assert [e.data["lines"] for e in events] == [[1, CHUNK_ROWS], [CHUNK_ROWS + 1, 2 * CHUNK_ROWS], [2 * CHUNK_ROWS + 1, rows]]
    announced = [r["record_id"] for e in events for r in e.data["records"]]
    assert sorted(announced) == sorted(str(pk) for pk in records.values_list("pk", flat=True))


def test_a_poisoned_import_ends_failed_after_two_tries_and_says_why(api, staff, demo, keycloak_clients, tmp_path, settings):
    settings.SCP_IMPORT_DIR = str(tmp_path)
    partner = activate(staff, demo, keycloak_clients, name="poisoned")
    person = make_person(demo["ke"], "POISON-1", [(demo["health"], ConsentStatus.GRANTED)])
    good = f"{person.pk},BCG,1,2026-01-02\n".encode()
    upload = SimpleUploadedFile("rows.csv", b"person_id,vaccine,dose,date\n" + good + b"\xff\xfe not utf-8\n" + good)
    job = import_store(integration=partner.integration, vertical=demo["health"], record_type="immunization", upload=upload)
    assert run_import(job.pk) == "queued"  # the first failure: tried again
    first = ImportJob.objects.get(pk=job.pk)
    assert first.status == "queued" and first.error.startswith("UnicodeDecodeError")
    assert run_import(job.pk) == "failed"  # the same failure again: it ends
    job = ImportJob.objects.get(pk=job.pk)
    assert job.status == "failed" and job.attempts == 2 and job.error == first.error
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    shown = api.get(f"/api/v1/imports/{job.pk}/").json()
    assert shown["status"] == "failed" and shown["error"].startswith("UnicodeDecodeError")
    # Not taken again by the sweeper, and listed in the compliance view.
    assert str(job.pk) not in {str(pk) for pk in requeue_stalled()["import"]}
    assert any(f"import {job.pk} failed" in reason for _i, reason, _at in compliance(tenant_ids=None))


def test_sigkilled_export_resumes_from_its_checkpoint_and_completes(api, staff, demo, keycloak_clients, tmp_path, settings):
    settings.SCP_EXPORT_DIR = str(tmp_path / "exports")
    partner = activate(staff, demo, keycloak_clients, name="export resumes")
    seed_persons(80_000, tenant_codes=["ke"], consent_mix=(("granted", 0.9), ("withdrawn", 0.1)))
    expected = set(map(str, Person.objects.filter(tenant=demo["ke"]).with_consent_in_effect(demo["health"])
                       .values_list("pk", flat=True)))
    env = worker_env(SCP_EXPORT_DIR=settings.SCP_EXPORT_DIR, SCP_IMPORT_STALE_SECONDS=4, SCP_IMPORT_SWEEP_SECONDS=1)
    purge_queue(env)
    first = Worker(env, tmp_path, "export-first")
    try:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
        job_id = api.post("/api/v1/exports/", {"vertical": "health", "format": "ndjson"}, format="json").json()["id"]
        wait_until(lambda: ExportJob.objects.get(pk=job_id).rows_written >= 5_000, 120, "the first chunks")
        first.kill()
    finally:
        first.stop()
    killed_at = ExportJob.objects.get(pk=job_id)
    assert killed_at.status == "running" and killed_at.rows_written < len(expected)
    second = Worker(env, tmp_path, "export-second")
    try:
        wait_until(lambda: ExportJob.objects.get(pk=job_id).status == "completed", 180, "the export to finish")
    finally:
        second.stop()
    job = ExportJob.objects.get(pk=job_id)
    assert job.attempts == 2 and job.rows_written == len(expected)
    rows = [json.loads(line)["id"] for line in b"".join(api.get(f"/api/v1/exports/{job_id}/download/").streaming_content).splitlines()]
    assert len(rows) == len(set(rows)) == len(expected) and set(rows) == expected


def _planner_rows(model):
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [model._meta.db_table])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_bulk_import_leaves_fresh_planner_statistics_behind(staff, demo, keycloak_clients, tmp_path, settings):
    """Issue #12 item 2: after a bulk arrival the planner knows the table's size at once (the
    first request is planned as well as the tenth), through scp_analyze as the application role."""
    settings.SCP_IMPORT_DIR, settings.SCP_ANALYZE_AFTER_ROWS = str(tmp_path), 300
    partner = activate(staff, demo, keycloak_clients, name="bulk")
    person = str(make_person(demo["ke"], "46000000", [(demo["health"], ConsentStatus.GRANTED)]).pk)
    small = import_store(integration=partner.integration, vertical=demo["health"], record_type="immunization",
                         upload=SimpleUploadedFile("rows.csv", _csv([person], 200)))
    assert run_import(small.pk) == ImportStatus.COMPLETED
    assert _planner_rows(VerticalRecord) != 200  # below the threshold: left to autovacuum
    bulk = import_store(integration=partner.integration, vertical=demo["health"], record_type="immunization",
                        upload=SimpleUploadedFile("rows.csv", _csv([person], 400)))
    assert run_import(bulk.pk) == ImportStatus.COMPLETED
    assert _planner_rows(VerticalRecord) == 600
