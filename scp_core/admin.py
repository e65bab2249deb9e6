from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Consent, Person, Tenant, Vertical, VerticalRecord


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("code", "name")


@admin.register(Vertical)
class VerticalAdmin(admin.ModelAdmin):
    list_display = ("code", "name")


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ("given_name", "family_name", "tenant", "district", "birth_date")
    list_filter = ("tenant", "sex")
    search_fields = ("given_name", "family_name", "national_id")
    show_full_result_count = False


@admin.register(Consent)
class ConsentAdmin(SimpleHistoryAdmin):
    """Consent changes go through scp_core.services.consent_record (the governance API);
    the admin shows them and their history."""

    list_display = ("person", "vertical", "status", "effective_at")
    list_filter = ("vertical", "status")
    raw_id_fields = ("person",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(VerticalRecord)
class VerticalRecordAdmin(admin.ModelAdmin):
    list_display = ("record_type", "vertical", "person", "created_at")
    list_filter = ("vertical", "record_type")
    raw_id_fields = ("person",)
