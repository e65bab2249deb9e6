from django.contrib import admin, messages

from scp_portal.admin_scoping import RoleScopedAdmin, RootEditableAdmin
from scp_portal.problems import ApiError

from .models import DataContract, DataContractVersion, IntegrationTemplate, Partner, RateLimitPolicy
from .services import template_vet


@admin.register(Partner)
class PartnerAdmin(RootEditableAdmin):
    list_display = ("name", "slug", "partner_type")


@admin.register(RateLimitPolicy)
class RateLimitPolicyAdmin(RootEditableAdmin):
    list_display = ("name", "requests_per_minute", "burst")


class DataContractVersionInline(admin.StackedInline):
    model = DataContractVersion
    extra = 0
    readonly_fields = ("version", "read_fields", "write_schemas", "data_categories", "created_at")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DataContract)
class DataContractAdmin(RoleScopedAdmin):
    """Contract versions are immutable once referenced; new versions are added by ROOT."""

    list_display = ("slug", "name")
    inlines = [DataContractVersionInline]


@admin.register(IntegrationTemplate)
class IntegrationTemplateAdmin(RoleScopedAdmin):
    """The shared registry. Templates change only by new versions (registry.services)."""

    list_display = ("slug", "version", "name", "data_contract", "vetted_at")
    list_filter = ("slug",)
    actions = ["vet_selected"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.roles(request).is_umbrella:
            actions.pop("vet_selected", None)
        return actions

    @admin.action(description="Vet the selected template versions (umbrella authority)")
    def vet_selected(self, request, queryset):
        for template in queryset:
            try:
                template_vet(template=template, actor=request.user, request_id=request.request_id)
                self.message_user(request, f"{template} vetted.", messages.SUCCESS)
            except ApiError as exc:
                self.message_user(request, f"{template}: {exc.detail}", messages.ERROR)
