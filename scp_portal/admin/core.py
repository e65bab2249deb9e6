from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path
from rest_framework.utils.encoders import JSONEncoder

from audit.services import AuditEvent, audit_record
from lifecycle.configuration import purpose_save, tenant_save
from lifecycle.disclosures import REPORT_LIMIT, person_disclosures
from lifecycle.permissions import may
from scp_core.errors import PermissionDeniedError
from scp_core.models import Consent, Person, Purpose, Tenant, Vertical, VerticalRecord

from .scoping import RootEditableAdmin, ScopedHistoryAdmin, TenantScopedAdmin


@admin.register(Tenant)
class TenantAdmin(RootEditableAdmin):
    list_display = ("code", "name", "audit_retention_days", "recertification_interval_days")

    def save_model(self, request, obj, form, change):
        if not change or self.in_scope(request, obj):
            tenant_save(actor=request.user, tenant=obj, request_id=request.request_id)

    def scope(self, queryset, roles):
        if roles.sees_everything or roles.partners:
            return queryset
        return queryset.filter(pk__in=roles.admin_tenants | {t for t, _ in roles.owned_verticals})


@admin.register(Purpose)
class PurposeAdmin(TenantScopedAdmin):
    """Each tenant's purpose vocabulary (issue #13): its admin adds and renames purposes;
    codes are fixed once made, and only ROOT marks an investigation."""

    list_display = ("code", "name", "tenant", "investigation")
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter), "investigation")

    def has_add_permission(self, request):
        roles = self.roles(request)
        return roles.is_root or bool(roles.admin_tenants)

    def has_change_permission(self, request, obj=None):
        return self.has_add_permission(request) and (obj is None or self.in_scope(request, obj))

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", "code") if obj is not None else ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            roles = self.roles(request)
            kwargs["queryset"] = Tenant.objects.all() if roles.is_root else Tenant.objects.filter(pk__in=roles.admin_tenants)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        may_mark = self.roles(request).is_root
        before = obj.investigation if obj is not None else False

        class PurposeForm(form):
            def clean_investigation(self):
                value = self.cleaned_data.get("investigation", False)
                if value != before and not may_mark:
                    raise ValidationError("Only ROOT marks a purpose as an investigation.")
                return value
        return PurposeForm

    def save_model(self, request, obj, form, change):
        if change and not self.in_scope(request, obj):
            raise PermissionDenied
        purpose_save(actor=request.user, purpose=obj, request_id=request.request_id)


@admin.register(Vertical)
class VerticalAdmin(RootEditableAdmin):
    list_display = ("code", "name")


class PersonDataAdmin(TenantScopedAdmin):
    """A screen that shows persons' data: every list page and every detail shown to staff is
    recorded in the audit log of the persons' tenant (spec §9), with who looked and at whom."""

    person_field = "pk"  # the attribute of a row that is the person's id

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if changelist is not None:
            self._audit_shown(request, [getattr(row, self.person_field) for row in changelist.result_list], "list")
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        shown = self.get_object(request, object_id) if response.status_code == 200 else None
        if shown is not None:
            self._audit_shown(request, [getattr(shown, self.person_field)], "detail")
        return response

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.path.endswith("/autocomplete/"):  # a lookup from another screen's field shows persons too
            self._audit_shown(request, list(results.values_list(self.person_field, flat=True)[:20]), "autocomplete")
        return results, may_have_duplicates

    def _audit_shown(self, request, person_ids, screen):
        by_tenant = {}
        for person_id, tenant_id in Person.objects.filter(pk__in=person_ids).values_list("pk", "tenant_id"):
            by_tenant.setdefault(tenant_id, []).append(str(person_id))
        for tenant_id, ids in by_tenant.items():
            audit_record(event_type=AuditEvent.PORTAL_PERSON_VIEWED, tenant=Tenant(pk=tenant_id), actor_user=request.user,
                         request_id=request.request_id,
                         details={"screen": f"{self.opts.model_name} {screen}", "path": request.path, "persons": sorted(ids)})


@admin.register(Person)
class PersonAdmin(PersonDataAdmin):
    list_display = ("given_name", "family_name", "tenant", "district", "birth_date")
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter), "sex")
    search_fields = ("given_name", "family_name", "national_id")
    show_full_result_count = False
    change_form_template = "admin/scp_core/person/change_form.html"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/disclosures/", self.admin_site.admin_view(self.disclosures_view),
                 name="%s_%s_disclosures" % info),
            path("<path:object_id>/disclosures/report/", self.admin_site.admin_view(self.disclosure_report_view),
                 name="%s_%s_disclosure_report" % info),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        person = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}),
                         "may_read_disclosures": person is not None and may(request.user, "read-disclosures", tenant=person.tenant)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _disclosures(self, request, object_id, **page):
        """The person (in the viewer's scope, else 404) and a page of its disclosures (audited)."""
        person = self.get_object(request, object_id)
        if person is None:
            raise Http404("No such person.")
        try:
            return person, person_disclosures(viewer=request.user, person=person, request_id=request.request_id, **page)
        except PermissionDeniedError as exc:
            raise PermissionDenied(exc.detail) from exc

    def disclosures_view(self, request, object_id):
        """Disclosures of a person: who received the person's data, when, how and why (issue #13)."""
        try:
            cursor = int(request.GET.get("cursor") or 0) or None
        except ValueError:
            cursor = None
        person, page = self._disclosures(request, object_id, cursor=cursor, via="portal")
        return TemplateResponse(request, "admin/scp_core/person/disclosures.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "person": person, "page": page,
            "title": f"Disclosures of {person.given_name} {person.family_name}",
        })

    def disclosure_report_view(self, request, object_id):
        """The printable subject-access report the tenant hands to the person (HTML, or JSON
        with ?format=json): every disclosure, embargoed ones counted, not named."""
        person, page = self._disclosures(request, object_id, limit=REPORT_LIMIT, via="report")
        report = {"person": {"id": str(person.pk), "name": f"{person.given_name} {person.family_name}",
                             "tenant": person.tenant.code},
                  "disclosures": page.entries, "withheld": page.withheld, "complete": page.next_cursor is None}
        if request.GET.get("format") == "json":
            return JsonResponse(report, encoder=JSONEncoder, json_dumps_params={"indent": 2})
        return TemplateResponse(request, "disclosures/report.html", {"report": report, "person": person, "page": page})


@admin.register(Consent)
class ConsentAdmin(PersonDataAdmin, ScopedHistoryAdmin):
    """Consent changes go through lifecycle.consent.consent_record (the governance API);
    the admin shows them and their history."""

    list_display = ("person", "vertical", "status", "effective_at")
    list_filter = ("vertical", "status")
    raw_id_fields = ("person",)
    show_full_result_count = False
    tenant_path = "person__tenant_id"
    person_field = "person_id"

    def history_view(self, request, object_id, extra_context=None):
        response = super().history_view(request, object_id, extra_context)
        shown = self.get_object(request, object_id) if response.status_code == 200 else None
        if shown is not None:
            self._audit_shown(request, [shown.person_id], "history")
        return response

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        response = super().history_form_view(request, object_id, version_id, extra_context)
        shown = self.get_object(request, object_id) if response.status_code == 200 else None
        if shown is not None:
            self._audit_shown(request, [shown.person_id], "history version")
        return response


@admin.register(VerticalRecord)
class VerticalRecordAdmin(PersonDataAdmin):
    list_display = ("record_type", "vertical", "person", "created_at")
    list_filter = ("vertical", "record_type")
    raw_id_fields = ("person",)
    tenant_path = "person__tenant_id"
    person_field = "person_id"
