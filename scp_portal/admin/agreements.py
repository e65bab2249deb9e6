"""Data-sharing agreements in the portal (issue #14 item 4): the "Upload agreement" screen reached
from an integration's page, the register of agreements, and the download of a document. Every
screen calls lifecycle.agreements (its permission check and audit); documents are streamed by
the portal after that check, never from a public URL."""
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from lifecycle.agreement_gate import BEFORE_SIGN_OFF, fields_read
from lifecycle.agreements import (
    CLOSED_STATES, MAX_FIELDS, MAX_PURPOSES, MAX_SIGNATORIES, MAX_TEXT, agreement_document, agreement_upload,
)
from lifecycle.api.agreements import document_response
from lifecycle.permissions import may
from lifecycle.roles import roles_of
from registry.models import DataSharingAgreement, Integration
from scp_core.errors import ApiError
from scp_core.models import Purpose

from .scoping import RoleScopedAdmin

_ENVELOPE_BYTES = 64 * 1024  # the terms and the multipart envelope around the document


class _BoundedChoices(forms.MultipleChoiceField):
    """Ticked choices, their count checked before each is looked up among the choices."""

    def __init__(self, *args, max_entries, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_entries = max_entries

    def validate(self, value):
        if len(value) > self.max_entries:
            raise forms.ValidationError(f"At most {self.max_entries} entries.")
        super().validate(value)


class AgreementForm(forms.Form):
    document = forms.FileField(help_text="The signed agreement: PDF, plain text (UTF-8), ODT or DOCX.")
    # Bounded before any line is looked at: MAX_SIGNATORIES lines of MAX_TEXT characters.
    signatories = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=MAX_SIGNATORIES * (MAX_TEXT + 2),
                                  help_text=f"One per line: name (organization); at most {MAX_SIGNATORIES}.")
    purposes = _BoundedChoices(widget=forms.CheckboxSelectMultiple, max_entries=MAX_PURPOSES,
                               help_text="Purposes it covers; the integration's own is required.")
    fields = _BoundedChoices(widget=forms.CheckboxSelectMultiple, max_entries=MAX_FIELDS,
                             help_text="Fields it lets the partner receive; every field the integration reads is required.")
    retention_days = forms.IntegerField(min_value=1, label="Retention (days)",
                                        help_text="How long the partner may keep what it receives.")
    effective_from = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    expires_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}),
                                 help_text="On this day it no longer covers anything: the integration is suspended.")

    def __init__(self, *args, integration, **kwargs):
        super().__init__(*args, **kwargs)
        purposes = Purpose.objects.filter(tenant_id=integration.tenant_id).order_by("code")
        self.fields["purposes"].choices = [(p.code, f"{p.code} ({p.name})") for p in purposes]
        contract = integration.data_contract
        allowed = sorted({f for v in integration.vertical_codes() for f in contract.approvable_fields(v)})
        self.fields["fields"].choices = [(f, f) for f in allowed]
        self.fields["document"].help_text += f" At most {settings.SCP_AGREEMENT_MAX_BYTES // (1024 * 1024)} MB."
        # What the integration needs covered, ticked to begin with.
        self.initial.setdefault("purposes", [integration.purpose_code])
        self.initial.setdefault("fields", sorted(fields_read(integration) & set(allowed)))

    def clean_signatories(self):
        lines = [line.strip() for line in self.cleaned_data["signatories"].splitlines() if line.strip()]
        if len(lines) > MAX_SIGNATORIES:
            raise forms.ValidationError(f"At most {MAX_SIGNATORIES} signatories.")
        return lines

    def terms(self):
        return dict(self.cleaned_data)


@csrf_exempt  # checked below, once the body is known to be within its limit
def agreement_upload_view(request, object_id):
    """Upload an integration's data-sharing agreement (tenant admin, partner user). A body over
    the limit is refused from its Content-Length before anything reads it (the CSRF check
    itself parses the body, so it runs only after this)."""
    integration = _integration_for_upload(request, object_id)
    if request.method == "POST":
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > settings.SCP_AGREEMENT_MAX_BYTES + _ENVELOPE_BYTES:
            return _form_page(request, integration, AgreementForm(integration=integration), status=413,
                              error=f"The document is too large: at most {settings.SCP_AGREEMENT_MAX_BYTES} bytes.")
    return _upload(request, integration)


@csrf_protect
def _upload(request, integration):
    change_url = reverse("admin:registry_integration_change", args=[integration.pk])
    if integration.status in CLOSED_STATES:
        messages.error(request, f"An agreement cannot be added to a {integration.get_status_display()} integration.")
        return redirect(change_url)
    form = AgreementForm(request.POST or None, request.FILES or None, integration=integration)
    if request.method != "POST" or not form.is_valid():
        return _form_page(request, integration, form, status=200 if request.method != "POST" else 422)
    try:
        agreement = agreement_upload(integration=integration, actor=request.user, document=form.cleaned_data["document"],
                                     request_id=request.request_id,
                                     **{k: v for k, v in form.terms().items() if k != "document"})
    except ApiError as exc:
        for error in exc.errors or [{"field": None, "message": exc.detail}]:
            field = error.get("field")
            form.add_error(field if field in form.fields else None, error["message"])
        response = _form_page(request, integration, form, status=exc.status_code, error=exc.detail)
        for header, value in exc.headers.items():  # Retry-After of the day's limit
            response[header] = value
        return response
    if agreement.integration.status not in BEFORE_SIGN_OFF:
        messages.success(request, f"Agreement {agreement.filename} uploaded, pinned by SHA-256 {agreement.sha256}. "
                                  "It is pending acceptance by the umbrella authority; until then the approved agreement "
                                  "stays in force.")
    else:
        messages.success(request, f"Agreement {agreement.filename} uploaded, pinned by SHA-256 {agreement.sha256}.")
    return redirect(change_url)


def _integration_for_upload(request, object_id):
    """The integration, if this person may see it (else 404) and upload its agreement (else 403)."""
    integration = get_object_or_404(
        Integration.objects.visible_to(roles_of(request.user)).select_related("tenant", "partner", "data_contract__contract"),
        pk=object_id,
    )
    if not may(request.user, "upload-agreement", integration):
        raise PermissionDenied
    return integration


def _form_page(request, integration, form, *, status, error=""):
    return TemplateResponse(request, "admin/lifecycle/agreement_upload.html", {
        **admin.site.each_context(request), "opts": Integration._meta, "integration": integration, "form": form,
        "error": error, "change_url": reverse("admin:registry_integration_change", args=[integration.pk]),
        "before_sign_off": integration.status in BEFORE_SIGN_OFF, "max_per_day": settings.SCP_AGREEMENT_MAX_PER_DAY,
        "title": f"Upload agreement: {integration.integration_name}",
    }, status=status)


@admin.register(DataSharingAgreement)
class DataSharingAgreementAdmin(RoleScopedAdmin):
    """The agreements of the integrations this person may see; read-only (a renewal is a new
    upload, from the integration's page)."""

    list_display = ("filename", "integration", "expires_on", "sha256_short", "uploaded_by", "uploaded_at")
    search_fields = ("filename", "sha256", "integration__integration_name")
    fields = readonly_fields = (
        "integration", "filename", "download", "content_type", "size", "sha256", "signatories", "purposes", "fields",
        "retention_days", "effective_from", "expires_on", "uploaded_by", "uploaded_at",
    )

    def scope(self, queryset, roles):
        return queryset.visible_to(roles).select_related("integration__tenant", "uploaded_by")

    @admin.display(description="SHA-256")
    def sha256_short(self, obj):
        return f"{obj.sha256[:16]}…"

    @admin.display(description="document")
    def download(self, obj):
        return format_html('<a href="{}" class="agreement-download">{}</a>', download_url(obj), obj.filename)

    def get_urls(self):
        return [
            path("<int:object_id>/download/", self.admin_site.admin_view(self.download_view),
                 name="registry_datasharingagreement_download"),
        ] + super().get_urls()

    def download_view(self, request, object_id):
        """Stream the document to someone who may see its integration (others: 404); audited."""
        agreement = get_object_or_404(self.get_queryset(request), pk=object_id)
        try:
            handle = agreement_document(agreement=agreement, actor=request.user, request_id=request.request_id)
        except ApiError as exc:
            return HttpResponse(exc.detail, status=exc.status_code, content_type="text/plain; charset=utf-8")
        return document_response(agreement, handle)


def download_url(agreement):
    return reverse("admin:registry_datasharingagreement_download", args=[agreement.pk])
