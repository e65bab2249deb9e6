from django.contrib import admin

from scp_portal.admin_scoping import RoleScopedAdmin

from .models import AuditRecord


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
