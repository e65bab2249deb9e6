from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import DataContract, DataContractVersion, Integration, IntegrationTemplate, Partner, RateLimitPolicy


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "partner_type")


@admin.register(RateLimitPolicy)
class RateLimitPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "requests_per_minute", "burst")


class DataContractVersionInline(admin.StackedInline):
    model = DataContractVersion
    extra = 0


@admin.register(DataContract)
class DataContractAdmin(admin.ModelAdmin):
    list_display = ("slug", "name")
    inlines = [DataContractVersionInline]


@admin.register(IntegrationTemplate)
class IntegrationTemplateAdmin(admin.ModelAdmin):
    list_display = ("slug", "version", "name", "data_contract", "vetted_at")


@admin.register(Integration)
class IntegrationAdmin(SimpleHistoryAdmin):
    """The state is read-only here: it changes only through the lifecycle services."""

    list_display = ("integration_name", "tenant", "partner", "status", "active_from", "active_until")
    list_filter = ("status", "tenant")
    search_fields = ("integration_name", "auth_client_id")
    readonly_fields = ("integration_id", "status", "auth_client_id", "created_by", "created_at")
