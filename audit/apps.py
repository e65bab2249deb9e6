from django.apps import AppConfig
from django.db.models.signals import post_migrate

from .privileges import grant_after_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self):
        # Sent once per app after every migration has run; connected for this app only, so
        # the rights are granted once, over every table.
        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="audit.grant_roles")
