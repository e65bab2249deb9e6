"""`python manage.py audit_partitions [--months-ahead N]`: create the audit records' monthly
partitions ahead (as the daily beat task does) and list them with their row estimates."""
from django.core.management.base import BaseCommand, CommandError
from django.db import DataError, connection

from audit import partitions
from audit.models import AuditRecord


class Command(BaseCommand):
    help = "Create the audit records' monthly partitions ahead and list them."

    def add_arguments(self, parser):
        parser.add_argument("--months-ahead", type=int, help="default: SCP_AUDIT_PARTITION_MONTHS_AHEAD")

    def handle(self, *args, months_ahead, **options):
        if not partitions.is_partitioned():
            raise CommandError(f"{AuditRecord._meta.db_table} is not partitioned (PostgreSQL only)")
        try:
            created = partitions.ensure(last=partitions.horizon(months_ahead))
        except DataError as refused:  # outside the range the database function allows (audit migration 0018)
            raise CommandError(str(refused).splitlines()[0]) from refused
        for name in created:
            self.stdout.write(f"created {name}")
        with connection.cursor() as cursor:
            cursor.execute("SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(%s)",
                           [[name for name, _lo, _hi in partitions.monthly()] + [partitions.DEFAULT_PARTITION]])
            estimates = dict(cursor.fetchall())
        for name, lower, upper in partitions.monthly():
            self.stdout.write(f"{name}  {lower:%Y-%m-%d} .. {upper:%Y-%m-%d}  ~{max(estimates.get(name, 0), 0)} rows")
        self.stdout.write(f"{partitions.DEFAULT_PARTITION}  (any other month)  "
                          f"~{max(estimates.get(partitions.DEFAULT_PARTITION, 0), 0)} rows")
