from django.contrib import admin

from lifecycle.configuration import tenant_save
from scp_core.models import Consent, Person, Tenant, Vertical, VerticalRecord

from .scoping import RootEditableAdmin, ScopedHistoryAdmin, TenantScopedAdmin


@admin.register(Tenant)
class TenantAdmin(RootEditableAdmin):
    list_display = ("code", "name", "audit_retention_days")

    def save_model(self, request, obj, form, change):
        if not change or self.in_scope(request, obj):
            tenant_save(actor=request.user, tenant=obj, request_id=request.request_id)

    def scope(self, queryset, roles):
        if roles.sees_everything or roles.partners:
            return queryset
        return queryset.filter(pk__in=roles.admin_tenants | {t for t, _ in roles.owned_verticals})


@admin.register(Vertical)
class VerticalAdmin(RootEditableAdmin):
    list_display = ("code", "name")


@admin.register(Person)
class PersonAdmin(TenantScopedAdmin):
    list_display = ("given_name", "family_name", "tenant", "district", "birth_date")
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter), "sex")
    search_fields = ("given_name", "family_name", "national_id")
    show_full_result_count = False


@admin.register(Consent)
class ConsentAdmin(TenantScopedAdmin, ScopedHistoryAdmin):
    """Consent changes go through lifecycle.consent.consent_record (the governance API);
    the admin shows them and their history."""

    list_display = ("person", "vertical", "status", "effective_at")
    list_filter = ("vertical", "status")
    raw_id_fields = ("person",)
    show_full_result_count = False
    tenant_path = "person__tenant_id"


@admin.register(VerticalRecord)
class VerticalRecordAdmin(TenantScopedAdmin):
    list_display = ("record_type", "vertical", "person", "created_at")
    list_filter = ("vertical", "record_type")
    raw_id_fields = ("person",)
    tenant_path = "person__tenant_id"
