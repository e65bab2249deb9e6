"""The portal's admin screens are scoped by governance role, never by Django model permissions:
each screen says who may see it and which rows, and changes go through services only."""
from django.contrib import admin

from lifecycle.roles import roles_of


class RoleScopedAdmin(admin.ModelAdmin):
    """Read-only by default; visible to anyone holding a governance role, rows scoped by `scope`."""

    def roles(self, request):
        return roles_of(request.user)

    def scope(self, queryset, roles):
        return queryset

    def get_queryset(self, request):
        return self.scope(super().get_queryset(request), self.roles(request))

    def has_module_permission(self, request):
        return self.roles(request).any

    def has_view_permission(self, request, obj=None):
        return self.roles(request).any

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RootEditableAdmin(RoleScopedAdmin):
    """Reference data that only ROOT maintains; everyone with a role may look."""

    def has_add_permission(self, request):
        return self.roles(request).is_root

    def has_change_permission(self, request, obj=None):
        return self.roles(request).is_root


class TenantScopedAdmin(RoleScopedAdmin):
    """Tenant data: ROOT, the umbrella authority and auditors see every tenant's rows, tenant
    admins their own tenants' (through `tenant_path`); nobody else sees the screen."""

    tenant_path = "tenant_id"

    def has_module_permission(self, request):
        roles = self.roles(request)
        return roles.sees_everything or bool(roles.admin_tenants)

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def scope(self, queryset, roles):
        if roles.sees_everything:
            return queryset
        return queryset.filter(**{f"{self.tenant_path}__in": roles.admin_tenants})
