"""The portal's admin screens are scoped by governance role, never by Django model permissions:
each screen says who may see it and which rows, and changes go through services only."""
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from simple_history.admin import SimpleHistoryAdmin

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

    def in_scope(self, request, obj):
        """Whether `obj` is one of the rows this person's screen shows (object-level scoping
        for the views that do not load through get_queryset, such as a library's)."""
        return obj is not None and self.get_queryset(request).filter(pk=obj.pk).exists()

    def save_model(self, request, obj, form, change):
        # Every view that saves ends here: refuse unless this person may change this row.
        if not self.has_change_permission(request, obj if change else None) or (change and not self.in_scope(request, obj)):
            raise PermissionDenied
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        if not self.has_delete_permission(request, obj) or not self.in_scope(request, obj):
            raise PermissionDenied
        super().delete_model(request, obj)


class ScopedHistoryAdmin(SimpleHistoryAdmin):
    """django-simple-history's screens, scoped like the rest. Its history form loads the
    historical row straight from the history table and only asks for view-or-change
    permission, and posting it saves the object: so the object must be in the person's scope,
    and the history is read-only everywhere (revert is off; governed changes go through
    services, which audit them)."""

    def has_view_history_or_change_history_permission(self, request, obj=None):
        return self.in_scope(request, obj) and self.has_view_permission(request, obj)

    def has_view_history_permission(self, request, obj=None):
        return self.has_view_history_or_change_history_permission(request, obj)

    def has_change_history_permission(self, request, obj=None):
        return False

    def revert_disabled(self, request, obj=None):
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method != "GET":
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)


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
