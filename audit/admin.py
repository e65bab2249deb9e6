from django.contrib import admin

from .models import AuditRecord


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only, so the admin offers no add, change or delete."""

    list_display = ("occurred_at", "event_type", "result", "tenant", "integration", "actor", "status_code", "error_code")
    list_filter = ("event_type", "result", "tenant")
    search_fields = ("request_id", "actor", "client_id", "error_code")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
