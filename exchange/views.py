"""The exchange API. Every view derives from GovernedAPIView, which authenticates the partner
and applies the integration-level policy before any handler runs, scopes every read to the
integration's tenant, and audits every response, allowed or denied."""
import csv
import io
import time

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import ExtractYear
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import AuditEvent, AuditResult, IncidentKind, IncidentSeverity, audit_record, incident_open
from scp_core.models import Consent, Person, Vertical, VerticalRecord
from scp_portal.problems import ApiError

from . import batch, controls, exports, policy, pushes, ratelimit, webhooks
from . import events as events_module
from .models import Event, EventType, ExportJob, ImportJob, Subscription
from .authentication import IntegrationTokenAuthentication
from .masking import minimize
from .serializers import (
    AggregateSerializer,
    EventFeedSerializer,
    ExportJobSerializer,
    ExportRequestSerializer,
    ImportJobSerializer,
    ImportUploadSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
    MinimizedPersonSerializer,
    PersonPageSerializer,
    ProblemSerializer,
    RecordPageSerializer,
    RecordPushSerializer,
    RecordSerializer,
)

VERTICAL_PARAM = OpenApiParameter("vertical", OpenApiTypes.STR, required=True, description="vertical code")
UPDATED_SINCE = OpenApiParameter("updated_since", OpenApiTypes.DATETIME, required=False)
PAGE_PARAMS = [
    OpenApiParameter("cursor", OpenApiTypes.STR, required=False, description="from the `next` link"),
    OpenApiParameter("page_size", OpenApiTypes.INT, required=False, description="1 to 500"),
]
# Errors are application/problem+json (RFC 9457); documented as such for every operation.
ERRORS = {
    status: OpenApiResponse(ProblemSerializer, description="problem details (application/problem+json)")
    for status in (401, 403, 404, 413, 422, 429, 503)
}


class ExchangeCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"


class GovernedAPIView(APIView):
    authentication_classes = [IntegrationTokenAuthentication]
    permission_classes = []

    def initialize_request(self, request, *args, **kwargs):
        request.scp_audit = {
            "started": time.perf_counter(), "verticals": [], "details": {}, "source_ip": controls.client_ip(request),
        }
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.user is None:  # authenticate now: every handler runs authenticated
            raise ApiError(401, "token_missing", "A bearer token is required.")
        self.rate_limit_headers = policy.check_gate(request.user, request._request)

    @property
    def principal(self):
        return self.request.user

    @property
    def tenant_id(self):
        return self.principal.integration.tenant_id

    def audit_details(self, **details):
        self.request._request.scp_audit["details"].update(details)

    def read_vertical(self):
        """The requested vertical, checked against the read scope and recorded for audit."""
        code = self._vertical(self.request.query_params.get("vertical", ""), self.principal.read_fields)
        self.audit_details(data_categories=sorted(self.principal.read_fields[code]))
        return code

    def _vertical(self, code, scope):
        self.audit_details(verticals_requested=[code[:40]], verticals_effective=sorted(self.principal.token_verticals & set(scope)))
        code = policy.require_vertical(self.principal, code, self.request._request.request_id, scope=scope)
        self.request._request.scp_audit["verticals"] = [code]
        return code

    def updated_since(self):
        raw = self.request.query_params.get("updated_since")
        if not raw:
            return None
        field = drf_serializers.DateTimeField()
        try:
            return field.to_internal_value(raw)
        except drf_serializers.ValidationError as exc:
            raise ApiError(422, "validation_error", "'updated_since' must be an ISO 8601 date-time.",
                           errors=[{"field": "updated_since", "message": str(exc.detail[0])}]) from exc

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        principal = getattr(request, "_user", None)
        if principal is not None and response.status_code < 400:
            for name, value in policy.deprecation_headers(principal.integration).items():
                response[name] = value
        for name, value in getattr(self, "rate_limit_headers", {}).items():
            response[name] = value
        _audit_request(request, response)
        return response


def _audit_request(request, response):
    audit = request._request.scp_audit
    integration = audit.get("integration")
    status = response.status_code
    if status == 401:
        _count_authentication_failure(audit.get("source_ip"), getattr(request._request, "request_id", ""))
    if status < 400:
        result = AuditResult.SUCCESS
    elif status in (401, 403, 429):
        result = AuditResult.DENIED
    else:
        result = AuditResult.FAILURE
    audit_record(
        event_type=AuditEvent.API_REQUEST,
        result=result,
        tenant=integration.tenant if integration else None,
        integration=integration,
        actor=audit.get("client_id", ""),
        client_id=audit.get("client_id", ""),
        request_id=getattr(request._request, "request_id", ""),
        source_ip=audit.get("source_ip") or request.META.get("REMOTE_ADDR"),
        verticals=audit["verticals"],
        status_code=status,
        error_code=getattr(response, "problem_code", ""),
        details={
            "method": request.method,
            "path": request.path,
            "token": audit.get("token", {}),
            "latency_ms": round((time.perf_counter() - audit["started"]) * 1000, 2),
            **audit["details"],
        },
    )


def _count_authentication_failure(source_ip, request_id):
    """§10: repeated authentication failures from one address open an incident (once a window)."""
    try:
        failures, _ = ratelimit.count(f"authfail:{source_ip}")
    except ApiError:
        return  # the counter is down: the request itself was already refused
    if failures == settings.SCP_AUTH_FAILURE_THRESHOLD:
        incident_open(
            kind=IncidentKind.AUTHENTICATION_FAILURES, severity=IncidentSeverity.MEDIUM,
            summary=f"{failures} failed authentications from {source_ip} within a minute",
            request_id=request_id, details={"source_ip": source_ip},
        )


def _consenting_persons(tenant_id, vertical_code):
    """Persons of the tenant whose consent for the vertical is in effect now (one query)."""
    return Person.objects.filter(tenant_id=tenant_id, id__in=Consent.objects.in_effect_for_code(vertical_code).values("person_id"))


class PersonListView(GovernedAPIView):
    @extend_schema(operation_id="persons_list", parameters=[VERTICAL_PARAM, UPDATED_SINCE, *PAGE_PARAMS], responses={200: PersonPageSerializer, **ERRORS})
    def get(self, request):
        """Persons of the integration's tenant with consent in effect now for the vertical, minimized."""
        code = self.read_vertical()
        fields = self.principal.read_fields[code]
        persons = _consenting_persons(self.tenant_id, code)
        since = self.updated_since()
        if since is not None:
            persons = persons.filter(updated_at__gte=since)
        paginator = ExchangeCursorPagination()
        page = paginator.paginate_queryset(persons.only(*{"id", *fields}), request, view=self)
        self.audit_details(consent={"checked": "in_effect filter", "allowed": len(page)})
        return paginator.get_paginated_response([minimize(p, fields) for p in page])


class PersonDetailView(GovernedAPIView):
    @extend_schema(operation_id="persons_retrieve", parameters=[VERTICAL_PARAM], responses={200: MinimizedPersonSerializer, **ERRORS})
    def get(self, request, person_id):
        """One person of the integration's tenant: 404 for any other tenant, 403 without consent."""
        code = self.read_vertical()
        person = get_object_or_404(Person.objects.filter(tenant_id=self.tenant_id), pk=person_id)
        consented = Consent.objects.in_effect_for_code(code).filter(person=person).exists()
        self.audit_details(consent={"checked": 1, "allowed": int(consented), "denied": [str(person.pk)] if not consented else []})
        if not consented:
            raise ApiError(403, "consent_denied", "The person's consent for this vertical is not in effect.")
        return Response(minimize(person, self.principal.read_fields[code]))


def _record_json(record):
    return {
        "id": str(record.id),
        "person_id": str(record.person_id),
        "vertical": record.vertical.code,
        "record_type": record.record_type,
        "data": record.data,
        "created_at": record.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": record.updated_at.isoformat().replace("+00:00", "Z"),
    }


class RecordListView(GovernedAPIView):
    @extend_schema(operation_id="records_list", parameters=[VERTICAL_PARAM, UPDATED_SINCE, *PAGE_PARAMS], responses={200: RecordPageSerializer, **ERRORS})
    def get(self, request):
        """Records of the contract's record types in the vertical, of consenting persons of the tenant."""
        code = self.read_vertical()
        types = sorted(self.principal.integration.data_contract.write_schemas.get(code, {}))
        records = VerticalRecord.objects.select_related("vertical").filter(
            vertical__code=code,
            record_type__in=types,
            person__tenant_id=self.tenant_id,
            person_id__in=Consent.objects.in_effect_for_code(code).values("person_id"),
        )
        since = self.updated_since()
        if since is not None:
            records = records.filter(updated_at__gte=since)
        paginator = ExchangeCursorPagination()
        page = paginator.paginate_queryset(records, request, view=self)
        self.audit_details(consent={"checked": "in_effect filter", "allowed": len(page)}, record_types=types)
        return paginator.get_paginated_response([_record_json(r) for r in page])

    @extend_schema(
        operation_id="records_push",
        request=RecordPushSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False)],
        responses={201: RecordSerializer, 409: OpenApiResponse(ProblemSerializer), **ERRORS},
    )
    def post(self, request):
        """Push one record; validated against the contract's JSON Schema; Idempotency-Key honoured."""
        if len(request.body) > settings.SCP_MAX_PUSH_BYTES:
            raise ApiError(413, "payload_too_large", f"A push may carry at most {settings.SCP_MAX_PUSH_BYTES} bytes.")
        body = RecordPushSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        self._vertical(data["vertical"], self.principal.write_scope)
        status, payload = pushes.push_record(
            integration=self.principal.integration,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            person_id=data["person_id"],
            vertical_code=data["vertical"],
            record_type=data["record_type"],
            data=data["data"],
            raw_body=request.body,
            on_details=self.audit_details,
        )
        return Response(payload, status=status)


GROUPS = {
    "district": ("district", "district"),
    "sex": ("sex", "sex"),
    "birth_year": ("birth_year", ExtractYear("birth_date")),
}


class AggregateView(GovernedAPIView):
    @extend_schema(
        operation_id="aggregates_retrieve",
        parameters=[VERTICAL_PARAM, OpenApiParameter("group_by", OpenApiTypes.STR, enum=sorted(GROUPS), required=False)],
        responses={200: AggregateSerializer, **ERRORS},
    )
    def get(self, request):
        """Counts of consenting persons of the tenant; cells below the threshold are suppressed."""
        code = self.read_vertical()
        group_by = request.query_params.get("group_by") or None
        if group_by is not None and group_by not in GROUPS:
            raise ApiError(422, "validation_error", f"'group_by' must be one of {', '.join(sorted(GROUPS))}.",
                           errors=[{"field": "group_by", "message": "unknown grouping"}])
        threshold = settings.SCP_AGGREGATE_MIN_CELL
        persons = _consenting_persons(self.tenant_id, code)
        cells = []
        total = persons.count() if group_by is None else None
        if group_by is not None:
            name, expression = GROUPS[group_by]
            rows = persons.annotate(**({name: expression} if name == "birth_year" else {})).values(name).annotate(n=Count("id")).order_by(name)
            for row in rows:
                small = row["n"] < threshold
                cells.append({"group": None if row[name] is None else str(row[name]), "count": None if small else row["n"], "suppressed": small})
            total = sum(row["n"] for row in rows)
            if any(cell["suppressed"] for cell in cells):
                total = 0  # the total would give away the suppressed cells by difference
        self.audit_details(consent={"checked": "in_effect filter", "aggregated": total}, aggregate=group_by or "total")
        small_total = total < threshold
        return Response({
            "vertical": code,
            "group_by": group_by,
            "min_cell": threshold,
            "total": None if small_total else total,
            "total_suppressed": small_total,
            "cells": cells,
        })



class SubscriptionView(GovernedAPIView):
    @extend_schema(operation_id="subscriptions_list", responses={200: SubscriptionSerializer(many=True), **ERRORS})
    def get(self, request):
        """The integration's webhook subscriptions (secrets are not shown again)."""
        subscriptions = Subscription.objects.filter(integration=self.principal.integration).order_by("created_at")
        return Response([
            {"id": str(s.id), "url": s.url, "event_types": s.event_types, "active": s.active} for s in subscriptions
        ])

    @extend_schema(operation_id="subscriptions_create", request=SubscriptionCreateSerializer,
                   responses={201: SubscriptionSerializer, **ERRORS})
    def post(self, request):
        """Subscribe an HTTPS endpoint to event types; the signing secret is answered once."""
        body = SubscriptionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        types = body.validated_data["event_types"]
        unknown = sorted(set(types) - set(EventType.values))
        if unknown:
            raise ApiError(422, "validation_error", "Unknown event types.",
                           errors=[{"field": "event_types", "message": f"unknown: {t}"} for t in unknown])
        webhooks.check_target(body.validated_data["url"])
        subscription = Subscription.objects.create(
            integration=self.principal.integration, url=body.validated_data["url"], event_types=sorted(set(types)),
            secret=webhooks.new_secret(),
        )
        self.audit_details(subscription=str(subscription.id), event_types=subscription.event_types)
        return Response({"id": str(subscription.id), "url": subscription.url, "event_types": subscription.event_types,
                         "active": True, "secret": subscription.secret}, status=201, headers={"Cache-Control": "no-store"})


class EventFeedView(GovernedAPIView):
    @extend_schema(
        operation_id="events_list",
        parameters=[OpenApiParameter("cursor", OpenApiTypes.INT, required=False, description="the last event id seen"),
                    OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="1 to 500")],
        responses={200: EventFeedSerializer, **ERRORS},
    )
    def get(self, request):
        """The pull feed: events after `cursor` that the integration may see now."""
        try:
            cursor = int(request.query_params.get("cursor") or 0)
            limit = min(max(int(request.query_params.get("limit") or 100), 1), 500)
        except ValueError as exc:
            raise ApiError(422, "validation_error", "'cursor' and 'limit' must be integers.") from exc
        integration = self.principal.integration
        events = list(
            Event.objects.filter(tenant_id=integration.tenant_id, id__gt=cursor).select_related("vertical", "tenant")
            .order_by("id")[:limit]
        )
        visible = [e for e in events if events_module.visible_to(e, integration)]
        self.audit_details(events={"scanned": len(events), "returned": len(visible)})
        return Response({
            "events": [{"id": e.id, **events_module.body_of(e)} for e in visible],
            "next_cursor": events[-1].id if events else cursor,
        })


def _import_json(request, job):
    return {
        "id": str(job.id),
        "status": job.status,
        "vertical": job.vertical.code,
        "record_type": job.record_type,
        "format": job.file_format,
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "rows_failed": job.rows_failed,
        **batch.progress(job),
        "errors_url": request.build_absolute_uri(f"/api/v1/imports/{job.id}/errors/"),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


class ImportCreateView(GovernedAPIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="imports_create",
        request={"multipart/form-data": ImportUploadSerializer},
        responses={202: ImportJobSerializer, 415: OpenApiResponse(ProblemSerializer), **ERRORS},
    )
    def post(self, request):
        """Upload a CSV (header `person_id` + the record type's fields) or NDJSON file."""
        body = ImportUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        code = self._vertical(body.validated_data["vertical"], self.principal.write_scope)
        job = batch.import_create(
            integration=self.principal.integration, vertical=Vertical.objects.get(code=code),
            record_type=body.validated_data["record_type"], upload=body.validated_data["file"],
        )
        self.audit_details(import_job=str(job.id), rows_total=job.rows_total)
        return Response(_import_json(request, job), status=202)


class _ImportJobView(GovernedAPIView):
    def job(self, job_id):
        """Only the integration's own jobs: another's id is not found."""
        return get_object_or_404(ImportJob.objects.select_related("vertical"), pk=job_id, integration=self.principal.integration)


class ImportDetailView(_ImportJobView):
    @extend_schema(operation_id="imports_retrieve", responses={200: ImportJobSerializer, **ERRORS})
    def get(self, request, job_id):
        """The job's status and progress (rows done, rows/s, ETA)."""
        return Response(_import_json(request, self.job(job_id)))


class ImportResumeView(_ImportJobView):
    @extend_schema(operation_id="imports_resume", request=None, responses={202: ImportJobSerializer, 409: OpenApiResponse(ProblemSerializer), **ERRORS})
    def post(self, request, job_id):
        """Resume a failed or abandoned job from its checkpoint."""
        job = self.job(job_id)
        batch.import_resume(job)
        job.refresh_from_db()
        return Response(_import_json(request, job), status=202)


class ImportErrorsView(_ImportJobView):
    @extend_schema(operation_id="imports_errors", responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS})
    def get(self, request, job_id):
        """The per-row error report as CSV: line, field, message."""
        job = self.job(job_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["line", "field", "message"])
        for row in job.row_errors.order_by("line").iterator():
            for problem in row.errors:
                writer.writerow([row.line, problem.get("field") or "", problem.get("message", "")])
        return HttpResponse(out.getvalue(), content_type="text/csv")


def _export_json(request, job):
    ready = job.status == "completed" and bool(job.file_path)
    return {
        "id": str(job.id), "status": job.status, "vertical": job.vertical.code, "format": job.file_format,
        "rows_written": job.rows_written, "rows_excluded": job.rows_excluded,
        "download_url": request.build_absolute_uri(f"/api/v1/exports/{job.id}/download/") if ready else None,
        "expires_at": job.expires_at,
    }


class ExportCreateView(GovernedAPIView):
    @extend_schema(operation_id="exports_create", request=ExportRequestSerializer, responses={202: ExportJobSerializer, **ERRORS})
    def post(self, request):
        """Export the integration's consented, minimized data of a vertical as NDJSON or CSV."""
        body = ExportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        code = self._vertical(body.validated_data["vertical"], self.principal.read_fields)
        job = exports.export_create(integration=self.principal.integration, vertical=Vertical.objects.get(code=code),
                                    file_format=body.validated_data["format"])
        self.audit_details(export_job=str(job.id))
        return Response(_export_json(request, job), status=202)


class _ExportJobView(GovernedAPIView):
    def job(self, job_id):
        return get_object_or_404(ExportJob.objects.select_related("vertical"), pk=job_id, integration=self.principal.integration)


class ExportDetailView(_ExportJobView):
    @extend_schema(operation_id="exports_retrieve", responses={200: ExportJobSerializer, **ERRORS})
    def get(self, request, job_id):
        return Response(_export_json(request, self.job(job_id)))


class ExportDownloadView(_ExportJobView):
    @extend_schema(operation_id="exports_download", responses={(200, "application/x-ndjson"): OpenApiTypes.BINARY,
                                                               409: OpenApiResponse(ProblemSerializer), **ERRORS})
    def get(self, request, job_id):
        """The export file, streamed, once the job is completed (until it expires)."""
        job = self.job(job_id)
        if job.status != "completed":
            raise ApiError(409, "invalid_transition", f"The export is {job.status}, not completed yet.")
        if not job.file_path:
            raise ApiError(404, "not_found", "The export has expired.")
        self.audit_details(export_job=str(job.id), data_categories=sorted(self.principal.read_fields.get(job.vertical.code, {})))
        content_type = "text/csv" if job.file_format == "csv" else "application/x-ndjson"
        return FileResponse(open(job.file_path, "rb"), content_type=content_type, as_attachment=True,
                            filename=f"export-{job.id}.{job.file_format}")


class SubscriptionRotateSecretView(GovernedAPIView):
    @extend_schema(operation_id="subscriptions_rotate_secret", request=None, responses={200: SubscriptionSerializer, **ERRORS})
    def post(self, request, subscription_id):
        """Issue a new signing secret (shown once); the old one stops signing at once."""
        subscription = get_object_or_404(Subscription, pk=subscription_id, integration=self.principal.integration)
        subscription.secret = webhooks.new_secret()
        subscription.save(update_fields=["secret"])
        self.audit_details(subscription=str(subscription.id), secret_rotated=True)
        return Response({"id": str(subscription.id), "url": subscription.url, "event_types": subscription.event_types,
                         "active": subscription.active, "secret": subscription.secret}, headers={"Cache-Control": "no-store"})
