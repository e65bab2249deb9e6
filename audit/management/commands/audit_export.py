"""`python manage.py audit_export (--tenant CODE | --platform) [--since ISO] [--until ISO] --out DIR`"""
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from audit.export import export_chain
from scp_core.models import Tenant


def _when(value, name):
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--{name} must be an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z")
    return parsed


class Command(BaseCommand):
    help = "Export a tenant's (or the platform's) sealed audit chain (records.jsonl + manifest.json) for regulators."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--tenant")
        which.add_argument("--platform", action="store_true",
                           help="the platform chain: requests that named no tenant, failed logins")
        parser.add_argument("--since")
        parser.add_argument("--until")
        parser.add_argument("--out", required=True)

    def handle(self, *args, tenant, platform, since, until, out, **options):
        found = None if platform else Tenant.objects.filter(code=tenant).first()
        if found is None and not platform:
            raise CommandError(f"unknown tenant {tenant!r}")
        manifest = export_chain(tenant=found, out_dir=out, since=_when(since, "since"), until=_when(until, "until"),
                                actor="audit_export")
        self.stdout.write(self.style.SUCCESS(
            f"exported {manifest['count']} records of {manifest['chain']} (seq {manifest['first_seq']}..{manifest['last_seq']}) to {out}"))
