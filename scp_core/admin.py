from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from scp_portal.admin_scoping import RoleScopedAdmin, RootEditableAdmin

from .models import Consent, Person, Tenant, Vertical, VerticalRecord


def _tenant_scope(queryset, roles, field="tenant_id"):
    """ROOT, the umbrella authority and auditors see every tenant; tenant admins their own."""
    if roles.sees_everything:
        return queryset
    return queryset.filter(**{f"{field}__in": roles.admin_tenants})


@admin.register(Tenant)
class TenantAdmin(RootEditableAdmin):
    list_display = ("code", "name")

    def scope(self, queryset, roles):
        if roles.sees_everything or roles.partners:
            return queryset
        return queryset.filter(pk__in=roles.admin_tenants | {t for t, _ in roles.owned_verticals})


@admin.register(Vertical)
class VerticalAdmin(RootEditableAdmin):
    list_display = ("code", "name")


@admin.register(Person)
class PersonAdmin(RoleScopedAdmin):
    list_display = ("given_name", "family_name", "tenant", "district", "birth_date")
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter), "sex")
    search_fields = ("given_name", "family_name", "national_id")
    show_full_result_count = False

    def scope(self, queryset, roles):
        return _tenant_scope(queryset, roles)


@admin.register(Consent)
class ConsentAdmin(RoleScopedAdmin, SimpleHistoryAdmin):
    """Consent changes go through scp_core.services.consent_record (the governance API);
    the admin shows them and their history."""

    list_display = ("person", "vertical", "status", "effective_at")
    list_filter = ("vertical", "status")
    raw_id_fields = ("person",)
    show_full_result_count = False

    def scope(self, queryset, roles):
        return _tenant_scope(queryset, roles, "person__tenant_id")


@admin.register(VerticalRecord)
class VerticalRecordAdmin(RoleScopedAdmin):
    list_display = ("record_type", "vertical", "person", "created_at")
    list_filter = ("vertical", "record_type")
    raw_id_fields = ("person",)

    def scope(self, queryset, roles):
        return _tenant_scope(queryset, roles, "person__tenant_id")
