"""The governance portal (Django admin): integrations as each role sees them, the vertical
owners' review queue, the umbrella authority's sign-off queue, and one screen per action.
Every button calls the same service as the governance API; the admin never assigns state."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django_fsm import can_proceed

from lifecycle import configuration, services
from lifecycle import forms as admin_forms
from lifecycle.actions import ACTIONS
from lifecycle.disclosures import partner_trail
from lifecycle.models import ReviewRequest, RoleAssignment, SignOffRequest
from lifecycle.permissions import may
from registry.models import Integration, IntegrationStatus
from scp_core.errors import ApiError

from .scoping import RoleScopedAdmin, ScopedHistoryAdmin

S = IntegrationStatus

def available_actions(user, integration):
    """The actions this user may take on this integration now: the buttons to show."""
    out = []
    for name, action in ACTIONS.items():
        if action.transition is None:
            possible = integration.is_serving and (action.applies is None or action.applies(integration))
        else:
            possible = can_proceed(getattr(integration, action.transition))
        if possible and _may(user, name, integration):
            out.append((name, action.label))
    return out


def _may(user, action, integration):
    if action != "review":
        return may(user, action, integration)
    reviewed = set(integration.vertical_reviews.values_list("vertical_id", flat=True))
    return any(
        may(user, "review", integration, vertical=v) for v in integration.verticals.all() if v.pk not in reviewed
    )


@admin.register(Integration)
class IntegrationAdmin(RoleScopedAdmin, ScopedHistoryAdmin):
    list_display = ("integration_name", "tenant", "partner", "status", "data_contract", "active_from", "active_until")
    list_filter = ("status", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("integration_name", "auth_client_id")
    change_form_template = "admin/lifecycle/integration_change_form.html"
    change_list_template = "admin/lifecycle/integration_change_list.html"  # links the partners' trail
    readonly_fields = (
        "integration_id", "tenant", "integration_name", "partner", "template", "status", "verticals", "purpose",
        "purpose_code", "embargo_until", "active_from", "active_until", "data_contract", "auth_client_id", "rate_limit_policy", "replacement",
        "other_tenants", "cross_tenant_granted_by", "created_by", "submitted_by", "created_at",
    )

    def scope(self, queryset, roles):
        return queryset.visible_to(roles).select_related("tenant", "partner", "data_contract__contract")

    def has_add_permission(self, request):
        roles = self.roles(request)
        return roles.is_root or bool(roles.admin_tenants or roles.partners)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            roles = self.roles(request)

            class ScopedRequestForm(admin_forms.IntegrationRequestForm):
                def __init__(self, *args, **kw):
                    super().__init__(*args, **kw)
                    # Tenant admins request for their own tenants only; partner users for any.
                    if not (roles.is_root or roles.partners):
                        self.fields["tenant"].queryset = self.fields["tenant"].queryset.filter(pk__in=roles.admin_tenants)

            return ScopedRequestForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": admin_forms.IntegrationRequestForm.Meta.fields})]
        return super().get_fieldsets(request, obj)

    def save_model(self, request, obj, form, change):
        if change:  # never reached: existing integrations have no editable fields
            raise PermissionDenied
        data = form.cleaned_data
        created = services.integration_create(
            actor=request.user,
            tenant=data["tenant"],
            partner=data["partner"],
            integration_name=data["integration_name"],
            verticals=list(data["verticals"]),
            template=data["template"],
            purpose=data.get("purpose") or "",
            purpose_code=data.get("purpose_code") or "",
            active_from=data.get("active_from"),
            active_until=data.get("active_until"),
            request_id=request.request_id,
        )
        obj.pk = created.pk
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        pass  # the service set the verticals

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except ApiError as exc:
            self.message_user(request, f"Not created: {exc.detail}", messages.ERROR)
            return redirect(request.path)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        integration = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if integration is not None:
            extra_context.update(governance_context(request, integration, self.admin_site.name))
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        urls = [
            path(
                "<uuid:object_id>/action/<slug:action>/",
                self.admin_site.admin_view(self.action_view),
                name="%s_%s_action" % info,
            ),
            path("received/", self.admin_site.admin_view(self.trail_view), name="%s_%s_trail" % info),
        ]
        return urls + super().get_urls()

    def trail_view(self, request):
        """What these integrations received (the disclosure ledger, counted): a partner's own trail."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(request, "admin/lifecycle/trail.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "rows": partner_trail(actor=request.user),
            "title": "What the integrations received (last 30 days)",
        })

    def action_view(self, request, object_id, action):
        """One governance action: a form (reason, decision, ...), then the service."""
        integration = get_object_or_404(self.get_queryset(request), pk=object_id)
        if action not in ACTIONS:
            raise PermissionDenied
        spec = ACTIONS[action]
        label = spec.label
        change_url = reverse("admin:registry_integration_change", args=[integration.pk])
        roles = self.roles(request)
        form = spec.form(request.POST or None, integration=integration, roles=roles)
        if request.method == "POST" and form.is_valid():
            try:
                outcome = spec.service(integration=integration, actor=request.user, request_id=request.request_id,
                                       **form.cleaned_data)
            except ApiError as exc:
                self.message_user(request, f"{label} refused: {exc.detail}", messages.ERROR)
                return redirect(change_url)
            if spec.shows_secret:
                integration, credentials = outcome
                response = TemplateResponse(request, "admin/lifecycle/secret_once.html", {
                    **self.admin_site.each_context(request), "opts": self.opts, "integration": integration,
                    "credentials": credentials, "change_url": change_url, "title": f"{label}: client credentials",
                })
                response["Cache-Control"] = "no-store"
                return response
            self.message_user(request, f"{label}: the integration is now {outcome.get_status_display()}.", messages.SUCCESS)
            return redirect(change_url)
        return TemplateResponse(request, "admin/lifecycle/action_form.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "integration": integration, "form": form,
            "action": action, "label": label, "change_url": change_url, "title": f"{label}: {integration.integration_name}",
            **governance_context(request, integration, self.admin_site.name),
        })


def governance_context(request, integration, site_name="admin"):
    """What the change form and the action screens show beside the record: the request next to
    the template and contract it derives from, the reviews, and the buttons this user has."""
    contract = integration.data_contract
    template = integration.template
    effective = integration.effective_read_fields()
    return {
        "integration": integration,
        "actions": [
            (name, label, reverse(f"{site_name}:registry_integration_action", args=[integration.pk, name]))
            for name, label in available_actions(request.user, integration)
        ],
        "template": template,
        "newer_template": integration.newer_template,
        "contract": contract,
        "contract_rows": [
            (vertical, field, rule, field in effective.get(vertical, {}))
            for vertical, fields in sorted(contract.read_fields.items())
            for field, rule in fields.items()
        ],
        "write_types": [(v, sorted(types)) for v, types in sorted(contract.write_schemas.items())],
        "declared_verticals": integration.vertical_codes(),
        "template_verticals": sorted(v.code for v in template.verticals.all()) if template else [],
        "reviews": integration.vertical_reviews.select_related("vertical", "reviewer").order_by("decided_at"),
        "transitions": integration.history.order_by("-history_date").select_related("history_user")[:20],
    }


class _QueueAdmin(IntegrationAdmin):
    """A queue is the integration screen filtered to what awaits the signed-in person."""

    list_display = ("integration_name", "tenant", "partner", "verticals_display", "data_contract", "created_at")
    list_filter = ()

    @admin.display(description="verticals")
    def verticals_display(self, obj):
        return ", ".join(obj.vertical_codes())

    def has_add_permission(self, request):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect(reverse("admin:registry_integration_change", args=[object_id]))

    def history_view(self, request, object_id, extra_context=None):
        # A queue is a proxy without history of its own: the integration's screen has it.
        return redirect(reverse("admin:registry_integration_history", args=[object_id]))

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        return redirect(reverse("admin:registry_integration_history", args=[object_id]))


@admin.register(ReviewRequest)
class ReviewQueueAdmin(_QueueAdmin):
    """Requested integrations of the owner's tenant and vertical that they have not reviewed yet."""

    def has_module_permission(self, request):
        return bool(self.roles(request).owned_verticals)

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def scope(self, queryset, roles):
        return queryset.awaiting_review_by(roles).prefetch_related("verticals")


@admin.register(SignOffRequest)
class SignOffQueueAdmin(_QueueAdmin):
    """Reviewed integrations awaiting the umbrella authority."""

    def has_module_permission(self, request):
        return self.roles(request).is_umbrella

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def scope(self, queryset, roles):
        return queryset.filter(status=S.REVIEWED).prefetch_related("verticals")


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(RoleScopedAdmin, ScopedHistoryAdmin):
    """Who holds which governance role: maintained by ROOT only, through the services (an
    assignment is granted or revoked, never edited in place)."""

    list_display = ("user", "role", "tenant", "vertical", "partner")
    list_filter = ("role", "tenant")

    def has_module_permission(self, request):
        return self.roles(request).is_root

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def save_model(self, request, obj, form, change):
        if change:
            raise PermissionDenied  # has no change permission: revoke and grant instead
        created = configuration.role_assignment_grant(
            actor=request.user, user=obj.user, role=obj.role, tenant=obj.tenant, vertical=obj.vertical,
            partner=obj.partner, request_id=request.request_id)
        obj.pk = created.pk

    def delete_model(self, request, obj):
        configuration.role_assignment_revoke(actor=request.user, assignment=obj, request_id=request.request_id)

    def delete_queryset(self, request, queryset):
        for assignment in queryset:
            self.delete_model(request, assignment)

