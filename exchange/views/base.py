"""The governed base of every exchange view: authentication, the integration-level policy
before any handler runs, and one audit record per response, allowed or denied."""
import time

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers as drf_serializers
from rest_framework.pagination import CursorPagination
from rest_framework.views import APIView

from audit.services import AuditEvent, AuditResult, IncidentKind, audit_record
from scp_core.errors import ApiError

from .. import controls, policy
from ..authentication import IntegrationTokenAuthentication
from ..metrics import observe_request
from ..scope import DataScope
from ..serializers import (
    ProblemSerializer,
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

    def disclose(self, *releases):
        """Record what this response releases (DataScope.release): written to the disclosure
        ledger with the request's audit record, if the response succeeds. A HEAD answer carries
        no body: it releases nothing."""
        if self.request.method == "HEAD":
            return
        self.request._request.scp_audit.setdefault("disclosures", []).extend(r for r in releases if r["person_ids"])

    def read_scope(self):
        """The DataScope of the requested vertical, checked against the read scope and
        recorded for audit: every read handler reads through it."""
        code = self._vertical(self.request.query_params.get("vertical", ""), self.principal.read_fields)
        data_scope = DataScope.of(self.principal.integration, code)
        self.audit_details(data_categories=sorted(data_scope.person_fields))
        return data_scope

    def _vertical(self, code, scope):
        self.audit_details(verticals_requested=[code[:40]], verticals_effective=sorted(self.principal.token_verticals & set(scope)))
        code = policy.require_vertical(self.principal, code, self.request._request.request_id, scope=scope)
        self.request._request.scp_audit["verticals"] = [code]
        return code

    def in_scope_or_404(self, queryset, pk):
        """The object `pk` of the scoped `queryset`, or 404. An id that exists outside the
        integration's scope (another tenant's person, another integration's job) is a
        mis-scoped attempt: it is refused the same way, and opens an incident (§10)."""
        found = queryset.filter(pk=pk).first()
        if found is not None:
            return found
        if queryset.model.objects.filter(pk=pk).exists():
            policy.mis_scoped(self.principal.integration, self.request._request.request_id,
                              f"asked for {queryset.model._meta.verbose_name} {pk} outside its scope",
                              kind=IncidentKind.FOREIGN_OBJECT, client_id=self.principal.client_id)
        raise ApiError(404, "not_found", "Not found.")

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
    status = response.status_code
    django_request = request._request
    audit = django_request.scp_audit
    integration = audit.get("integration")
    if status == 401 and integration is None:
        return  # nobody authenticated: left to the API guard (counted per address, recorded once a window)
    django_request.scp_audited = True
    result = AuditResult.of_status(status)
    elapsed = time.perf_counter() - audit["started"]
    observe_request(tenant=integration.tenant.code if integration else None,
                    integration=str(integration.pk) if integration else None, status=status,
                    code=getattr(response, "problem_code", ""), seconds=elapsed)
    audit_record(
        event_type=AuditEvent.API_REQUEST,
        result=result,
        tenant=integration.tenant if integration else None,
        integration=integration,
        actor=audit.get("client_id", ""),
        client_id=audit.get("client_id", ""),
        request_id=getattr(django_request, "request_id", ""),
        source_ip=audit.get("source_ip") or request.META.get("REMOTE_ADDR"),
        verticals=audit["verticals"],
        status_code=status,
        error_code=getattr(response, "problem_code", ""),
        details={
            "method": request.method,
            "path": request.path,
            "token": audit.get("token", {}),
            "latency_ms": round(elapsed * 1000, 2),
            **({"client_request_id": django_request.client_request_id} if getattr(django_request, "client_request_id", "") else {}),
            **audit["details"],
        },
        disclosures=audit.get("disclosures", ()) if status < 400 else (),
    )
