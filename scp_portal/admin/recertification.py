"""Recertifications in the portal (issue #14 item 3): the vertical owners' list of what to
re-approve, each with what they weigh (scope, purpose, last use, volume since the last
approval) and a form that calls `lifecycle.recertification.recertification_answer`."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse

from lifecycle import recertification as recert
from lifecycle.models import Recertification, RecertificationStatus
from lifecycle.permissions import may
from scp_core.errors import ApiError

from .scoping import RoleScopedAdmin


class AnswerForm(forms.Form):
    decision = forms.ChoiceField(choices=[("confirm", "Confirm: it still needs this access"),
                                          ("narrow", "Narrow: keep only the fields ticked below"),
                                          ("revoke", "Revoke: suspend the integration")],
                                 widget=forms.RadioSelect)
    approved_fields = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                                label="Fields to keep (narrow only)")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                             help_text="Recorded; required to revoke.")

    def __init__(self, *args, fields, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["approved_fields"].choices = [(f, f"{f} ({rule})") for f, rule in fields]


@admin.register(Recertification)
class RecertificationAdmin(RoleScopedAdmin):
    list_display = ("integration", "vertical", "status", "due_at", "lapse_stage", "answered_by", "answered_at")
    list_filter = ("status", "lapse_stage")
    change_form_template = "admin/lifecycle/recertification.html"
    exclude = ("snapshot",)  # shown readably in the panel above the record

    def scope(self, queryset, roles):
        return queryset.visible_to(roles).select_related("integration__tenant", "vertical", "answered_by")

    def has_module_permission(self, request):
        roles = self.roles(request)
        return roles.sees_everything or bool(roles.admin_tenants or roles.owned_verticals)

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    # Nothing may be added (the schedule opens them), changed (the answer screen calls its
    # service) or deleted: RoleScopedAdmin's defaults.

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [path("<int:object_id>/answer/", self.admin_site.admin_view(self.answer_view),
                     name="%s_%s_answer" % info)] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        recertification = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if recertification is not None:
            extra.update(self._context(request, recertification))
        return super().change_view(request, object_id, form_url, extra)

    def _context(self, request, recertification):
        integration = recertification.integration
        scope = recert.scope_of(integration, recertification.vertical.code)
        fields = sorted({**scope["fields"], **scope["record_fields"]}.items())
        answerable = (recertification.status == RecertificationStatus.OPEN
                      and may(request.user, "recertify", integration, vertical=recertification.vertical))
        return {
            "recertification": recertification,
            "integration_url": reverse("admin:registry_integration_change", args=[integration.pk]),
            "scope_rows": fields,
            "now_usage": recert.usage(integration, recertification.vertical.code,
                                      recert.last_approval(integration, recertification.vertical)),
            "answer_form": AnswerForm(fields=fields) if answerable else None,
            "answer_url": reverse("admin:lifecycle_recertification_answer", args=[recertification.pk]),
        }

    def answer_view(self, request, object_id):
        recertification = get_object_or_404(self.get_queryset(request), pk=object_id)
        if request.method != "POST":
            return redirect(reverse("admin:lifecycle_recertification_change", args=[recertification.pk]))
        if not may(request.user, "recertify", recertification.integration, vertical=recertification.vertical):
            raise PermissionDenied
        scope = recert.scope_of(recertification.integration, recertification.vertical.code)
        form = AnswerForm(request.POST, fields=sorted({**scope["fields"], **scope["record_fields"]}.items()))
        back = redirect(reverse("admin:lifecycle_recertification_change", args=[recertification.pk]))
        if not form.is_valid():
            self.message_user(request, f"Not recorded: {form.errors.as_text()}", messages.ERROR)
            return back
        try:
            answered = recert.recertification_answer(
                recertification=recertification, actor=request.user, request_id=request.request_id, **form.cleaned_data)
        except ApiError as exc:
            details = "; ".join(e["message"] for e in exc.errors)
            self.message_user(request, f"Not recorded: {exc.detail} {details}".strip(), messages.ERROR)
        else:
            self.message_user(request, f"Recorded: {answered.get_status_display()}.", messages.SUCCESS)
        return back
