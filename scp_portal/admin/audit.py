from django import forms
from django.contrib import admin
from django.http import FileResponse, Http404, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.models import AuditExportJob, AuditRecord, ExportStatus, Incident
from audit.portal_exports import job_zip
from lifecycle.audit_exports import export_request, may_export
from scp_core.models import Tenant

from .scoping import RoleScopedAdmin, TenantScopedAdmin


@admin.register(AuditRecord)
class AuditRecordAdmin(TenantScopedAdmin):
    """Read-only: the audit log is append-only, so the admin offers no add, change or delete.
    ROOT, the umbrella authority and auditors see every tenant; tenant admins their own."""

    list_display = ("occurred_at", "event_type", "result", "tenant", "integration", "actor", "status_code", "error_code")
    list_filter = ("event_type", "result", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("request_id", "actor", "client_id", "error_code")
    show_full_result_count = False


@admin.register(Incident)
class IncidentAdmin(RoleScopedAdmin):
    """Incidents (spec §10): for the umbrella authority, auditors and ROOT."""

    list_display = ("opened_at", "severity", "kind", "tenant", "integration", "summary", "resolved_at")
    list_filter = ("severity", "kind", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("summary", "request_id")

    def has_module_permission(self, request):
        return self.roles(request).sees_everything

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)


class ExportRequestForm(forms.ModelForm):
    class Meta:
        model = AuditExportJob
        fields = ["tenant", "since", "until"]


@admin.register(AuditExportJob)
class AuditExportJobAdmin(TenantScopedAdmin):
    """Auditors (and tenant admins, for their tenant) export a tenant's audit trail for a
    period; large exports run in the background with a live progress bar."""

    list_display = ("created_at", "tenant", "since", "until", "status", "progress_bar", "download_link")
    change_form_template = "admin/audit/export_job_change_form.html"
    readonly_fields = ("tenant", "since", "until", "requested_by", "status", "records_done", "records_total",
                       "error", "created_at", "finished_at")

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, **kwargs)
        roles = self.roles(request)

        class Form(ExportRequestForm):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                if not roles.sees_everything:
                    self.fields["tenant"].queryset = Tenant.objects.filter(pk__in=roles.admin_tenants)

        return Form

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        job = export_request(actor=request.user, **form.cleaned_data)
        obj.pk, obj._state.adding = job.pk, False

    @admin.display(description="progress")
    def progress_bar(self, job):
        return format_html('<progress max="100" value="{}"></progress> {}%', job.percent, job.percent)

    @admin.display(description="file")
    def download_link(self, job):
        if job.status != ExportStatus.COMPLETED:
            return "-"
        return format_html('<a href="{}">download</a>', reverse("admin:audit_auditexportjob_download", args=[job.pk]))

    def get_urls(self):
        return [
            path("<int:job_id>/progress/", self.admin_site.admin_view(self.progress_view), name="audit_auditexportjob_progress"),
            path("<int:job_id>/download/", self.admin_site.admin_view(self.download_view), name="audit_auditexportjob_download"),
        ] + super().get_urls()

    def _job(self, request, job_id):
        job = self.get_queryset(request).filter(pk=job_id).select_related("tenant").first()
        if job is None or not may_export(request.user, job.tenant):
            raise Http404
        return job

    def progress_view(self, request, job_id):
        job = self._job(request, job_id)
        return JsonResponse({"status": job.status, "percent": job.percent, "done": job.records_done,
                             "total": job.records_total, "error": job.error})

    def download_view(self, request, job_id):
        job = self._job(request, job_id)
        if job.status != ExportStatus.COMPLETED or not job_zip(job).exists():
            raise Http404
        return FileResponse(job_zip(job).open("rb"), as_attachment=True, filename=job_zip(job).name)
