"""Load the contract's demo data: `python manage.py seed_demo [--persons N]`."""
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from lifecycle.demo import seed_persons, seed_reference_data
from scp_core.models import Person


class Command(BaseCommand):
    help = "Load the demo tenants, verticals, partner, registry template, staff users and persons."

    def add_arguments(self, parser):
        parser.add_argument("--persons", type=int, default=1000, help="persons to create (default 1000)")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when the database already has persons"
        )

    def handle(self, *args, persons, if_empty, **options):
        if persons < 0:
            raise CommandError("--persons must not be negative")
        if if_empty and Person.objects.exists():
            self.stdout.write("Demo data already present; nothing to do.")
            return
        started = time.monotonic()
        seed_reference_data(dev_passwords=settings.DEBUG)
        created = seed_persons(persons) if persons else 0
        self.stdout.write(
            self.style.SUCCESS(f"Demo data loaded: {created} persons in {time.monotonic() - started:.1f}s")
        )
