from django.contrib import admin

from scp_portal.admin_scoping import RoleScopedAdmin

from .models import AuditRecord, Incident


@admin.register(AuditRecord)
class AuditRecordAdmin(RoleScopedAdmin):
    """Read-only: the audit log is append-only, so the admin offers no add, change or delete.
    ROOT, the umbrella authority and auditors see every tenant; tenant admins their own."""

    list_display = ("occurred_at", "event_type", "result", "tenant", "integration", "actor", "status_code", "error_code")
    list_filter = ("event_type", "result", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("request_id", "actor", "client_id", "error_code")
    show_full_result_count = False

    def has_module_permission(self, request):
        roles = self.roles(request)
        return roles.sees_everything or bool(roles.admin_tenants)

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def scope(self, queryset, roles):
        if roles.sees_everything:
            return queryset
        return queryset.filter(tenant_id__in=roles.admin_tenants)


@admin.register(Incident)
class IncidentAdmin(RoleScopedAdmin):
    """Incidents (spec §10): for the umbrella authority, auditors and ROOT."""

    list_display = ("opened_at", "severity", "kind", "tenant", "integration", "summary", "resolved_at")
    list_filter = ("severity", "kind", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("summary", "request_id")

    def has_module_permission(self, request):
        return self.roles(request).sees_everything

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)
