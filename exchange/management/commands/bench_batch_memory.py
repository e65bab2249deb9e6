"""Measure the memory of batch import and export at scale (a benchmark, never a test):

    python manage.py bench_batch_memory --rows 1000000

Loads enough demo persons, makes a synthetic Active integration, then runs the import task
body and the export task body each in a fresh Python process (as a worker would) and prints
the peak resident set size (RSS) of each, with rows per second.
"""
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand

from exchange import batch, exports
from registry.models import Integration, IntegrationTemplate, Partner
from lifecycle.demo import seed_persons, seed_reference_data
from scp_core.models import Person, Tenant, Vertical

CHILD = """
import json, resource, sys, time
import django
django.setup()
from exchange.batch import run_import
from exchange.exports import run_export
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
result = (run_import if sys.argv[1] == "import" else run_export)(sys.argv[2])
print(json.dumps({"result": str(result), "seconds": time.monotonic() - started,
                  "rss_before_mb": before / 1024, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


class Command(BaseCommand):
    help = "Benchmark the peak memory of a large batch import and export (prints JSON)."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--out", help="also write the figures to this JSON file")

    def handle(self, *args, rows, out, **options):
        seed_reference_data()
        ke, health = Tenant.objects.get(code="ke"), Vertical.objects.get(code="health")
        # Enough consenting persons of `ke` for an export of `rows` rows.
        consenting = Person.objects.in_tenant(ke).with_consent_in_effect(health).count()
        if consenting < rows:
            self.stdout.write(f"seeding persons for {rows - consenting} more consenting rows ...")
            seed_persons(rows - consenting, tenant_codes=["ke"], consent_mix=(("granted", 1.0),))
        integration = self._integration(ke, health)
        persons = [str(p) for p in Person.objects.in_tenant(ke).with_consent_in_effect(health).values_list("pk", flat=True)[:1000]]
        results = {"rows": rows}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.csv"
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["person_id", "vaccine", "dose", "date"])
                for i in range(rows):
                    writer.writerow([persons[i % len(persons)], "OPV", 1 + i % 4, "2026-05-17"])
            with path.open("rb") as handle:
                job = batch.import_store(integration=integration, vertical=health, record_type="immunization",
                                          upload=File(handle, name="rows.csv"))
            results["import"] = self._child("import", job.pk, rows)
        export = exports.ExportJob.objects.create(integration=integration, vertical=health, file_format="ndjson")
        results["export"] = self._child("export", export.pk, rows)
        text = json.dumps(results, indent=2)
        self.stdout.write(text)
        if out:
            Path(out).write_text(text)

    def _child(self, kind, job_id, rows):
        """Run the task body in a fresh process with production-like settings (DEBUG off:
        with DEBUG on, Django keeps every SQL statement in memory)."""
        env = {
            **os.environ,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", secrets.token_urlsafe(50)),
            "SCP_PSEUDONYM_KEY": settings.SCP_PSEUDONYM_KEY,
            "SCP_AUDIT_SIGNING_KEY": settings.SCP_AUDIT_SIGNING_KEY,
            "SCP_EXPORT_DIR": settings.SCP_EXPORT_DIR,
            "SCP_IMPORT_DIR": settings.SCP_IMPORT_DIR,
        }
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", CHILD, kind, str(job_id)], cwd=settings.BASE_DIR,
                              capture_output=True, text=True, check=True, env=env)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["rows_per_second"] = round(rows / max(time.monotonic() - started, 1e-9))
        return figures

    def _integration(self, tenant, vertical):
        """A synthetic Active integration for the benchmark (no Keycloak client is needed:
        the task bodies never see a token)."""
        template = IntegrationTemplate.objects.get(slug="health-records-basic", version=1)
        user = get_user_model().objects.get(username="root")
        integration = Integration.objects.create(
            tenant=tenant, partner=Partner.objects.get(slug="acme-health"),
            integration_name="bench", template=template, data_contract=template.data_contract, created_by=user,
        )
        integration.verticals.set([vertical])
        Integration.objects.filter(pk=integration.pk).update(
            status="active", read_scope=integration.effective_read_fields(), auth_client_id="bench")
        integration.refresh_from_db()
        return integration
