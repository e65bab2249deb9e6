"""`python manage.py audit_verify DIR` (an export), or `--tenant CODE` / `--platform` (the live database).
Exit 0 when the chain holds; otherwise non-zero, naming the first bad record."""
from django.core.management.base import BaseCommand, CommandError

from audit.chain import PLATFORM_CHAIN, ChainBroken, seal_chain, verify_chain
from audit.services import AuditEvent, IncidentKind, IncidentSeverity, audit_record, incident_open
from audit.signing import trusted_public_keys
from audit.verifier.scp_audit_verify import Failure, verify_export
from scp_core.models import Tenant


class Command(BaseCommand):
    help = "Verify an audit export or a tenant's live audit chain."

    def add_arguments(self, parser):
        parser.add_argument("export_dir", nargs="?")
        parser.add_argument("--tenant")
        parser.add_argument("--platform", action="store_true", help="the live platform chain")
        parser.add_argument("--no-seal", action="store_true", help="verify without sealing pending records first")

    def handle(self, *args, export_dir, tenant, platform, no_seal, **options):
        if sum(map(bool, (export_dir, tenant, platform))) != 1:
            raise CommandError("give an export directory, --tenant CODE or --platform")
        if export_dir:
            try:
                summary = verify_export(export_dir, trusted_public_keys())
            except Failure as failure:
                raise CommandError(f"FAILED: {failure}", returncode=1) from failure
            self.stdout.write(self.style.SUCCESS(f"OK: {summary['records']} records verify"))
            return
        found = None if platform else Tenant.objects.filter(code=tenant).first()
        if found is None and not platform:
            raise CommandError(f"unknown tenant {tenant!r}")
        chain = PLATFORM_CHAIN if platform else found.code
        if not no_seal:
            seal_chain(chain)
        try:
            checked = verify_chain(chain)
        except ChainBroken as broken:
            incident_open(kind=IncidentKind.VERIFICATION_FAILED, severity=IncidentSeverity.CRITICAL,
                          summary=f"audit chain of {chain} broken at {broken}", tenant=found,
                          details={"record_id": broken.record_id, "seq": broken.seq, "reason": broken.reason})
            audit_record(event_type=AuditEvent.AUDIT_VERIFY_FAILED, tenant=found, actor="audit_verify",
                         result="failure", details={"record_id": broken.record_id, "reason": broken.reason})
            raise CommandError(f"FAILED: {broken}", returncode=1) from broken
        self.stdout.write(self.style.SUCCESS(f"OK: {checked} records of {chain} verify"))
