from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from lifecycle.curation import template_revise, template_vet
from registry.models import DataContract, DataContractVersion, IntegrationTemplate, Partner, RateLimitPolicy
from scp_core.errors import ApiError
from scp_core.models import Vertical

from .scoping import RoleScopedAdmin, RootEditableAdmin


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


class TemplateRevisionForm(forms.Form):
    """What a new template version changes; it starts from the version being revised."""

    name = forms.CharField(max_length=200)
    purpose = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    data_contract = forms.ModelChoiceField(queryset=DataContractVersion.objects.select_related("contract"))
    verticals = forms.ModelMultipleChoiceField(queryset=Vertical.objects.all(), widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, template, **kwargs):
        super().__init__(*args, initial={
            "name": template.name, "purpose": template.purpose, "data_contract": template.data_contract,
            "verticals": list(template.verticals.all()),
        }, **kwargs)


@admin.register(IntegrationTemplate)
class IntegrationTemplateAdmin(RoleScopedAdmin):
    """The shared registry. Templates change only by new versions (lifecycle.curation)."""

    list_display = ("slug", "version", "name", "data_contract", "vetted_at")
    list_filter = ("slug",)
    actions = ["vet_selected"]
    change_form_template = "admin/registry/template_change_form.html"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<int:object_id>/revise/", self.admin_site.admin_view(self.revise_view), name="%s_%s_revise" % info),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_revise": self.roles(request).is_umbrella}
        return super().change_view(request, object_id, form_url, extra_context)

    def revise_view(self, request, object_id):
        """A new, not yet vetted version of a template, from this one (the umbrella authority)."""
        if not self.roles(request).is_umbrella:
            raise PermissionDenied
        template = get_object_or_404(self.get_queryset(request), pk=object_id)
        form = TemplateRevisionForm(request.POST or None, template=template)
        if request.method == "POST" and form.is_valid():
            try:
                revised = template_revise(template=template, actor=request.user, request_id=request.request_id,
                                          **form.cleaned_data)
            except ApiError as exc:
                self.message_user(request, f"Revision refused: {exc.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{revised} created; vet it to make it usable by tenants.", messages.SUCCESS)
                return redirect(reverse("admin:registry_integrationtemplate_change", args=[revised.pk]))
        return TemplateResponse(request, "admin/registry/template_revise.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "template": template, "form": form,
            "title": f"Revise {template}",
            "change_url": reverse("admin:registry_integrationtemplate_change", args=[template.pk]),
        })

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
