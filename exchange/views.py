"""The exchange API. Every view derives from GovernedAPIView, which authenticates the partner,
applies the integration-level policy before any handler runs and audits every response."""
import time

from django.shortcuts import get_object_or_404
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import AuditEvent, AuditResult, audit_record
from scp_core.models import Consent, Person, Vertical
from scp_portal.problems import ApiError

from . import policy
from .authentication import IntegrationTokenAuthentication
from .masking import minimize


class PersonCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"


class GovernedAPIView(APIView):
    authentication_classes = [IntegrationTokenAuthentication]
    permission_classes = []

    def initialize_request(self, request, *args, **kwargs):
        request.scp_audit = {"started": time.perf_counter(), "verticals": [], "details": {}}
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        request.user  # noqa: B018 -- authenticate now, so every handler runs authenticated
        if request.user is None:
            raise ApiError(401, "token_missing", "A bearer token is required.")
        policy.check_integration_state(request.user.integration, request.method)

    @property
    def principal(self):
        return self.request.user

    def scoped_vertical(self):
        """The requested vertical, checked against the effective scope and recorded for audit."""
        code = policy.check_vertical(self.principal, self.request.query_params.get("vertical", ""))
        self.request._request.scp_audit["verticals"] = [code]
        return code

    def contract_fields(self, vertical_code):
        return self.principal.read_fields[vertical_code]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        principal = getattr(request, "_user", None)
        if principal is not None and response.status_code < 400:
            for name, value in policy.deprecation_headers(principal.integration).items():
                response[name] = value
        _audit_request(request, response)
        return response


def _audit_request(request, response):
    audit = request._request.scp_audit
    integration = audit.get("integration")
    status = response.status_code
    code = getattr(response, "problem_code", "")
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
        source_ip=request.META.get("REMOTE_ADDR"),
        verticals=audit["verticals"],
        status_code=status,
        error_code=code,
        details={
            "method": request.method,
            "path": request.path,
            "token": audit.get("token", {}),
            "latency_ms": round((time.perf_counter() - audit["started"]) * 1000, 2),
            **audit["details"],
        },
    )


class PersonListView(GovernedAPIView):
    """Persons of the integration's tenant with consent in effect now for the vertical."""

    def get(self, request):
        code = self.scoped_vertical()
        vertical = Vertical.objects.get(code=code)
        fields = self.contract_fields(code)
        persons = Person.objects.in_tenant(self.principal.integration.tenant_id).with_consent_in_effect(vertical)
        paginator = PersonCursorPagination()
        page = paginator.paginate_queryset(persons, request, view=self)
        request._request.scp_audit["details"].update(
            {"data_categories": sorted(fields), "consent": {"filter": "in_effect", "returned": len(page)}}
        )
        return paginator.get_paginated_response([minimize(p, fields) for p in page])


class PersonDetailView(GovernedAPIView):
    """One person of the integration's tenant; 404 for other tenants, 403 without consent."""

    def get(self, request, person_id):
        code = self.scoped_vertical()
        fields = self.contract_fields(code)
        person = get_object_or_404(Person.objects.in_tenant(self.principal.integration.tenant_id), pk=person_id)
        consented = Consent.objects.in_effect(Vertical.objects.get(code=code)).filter(person=person).exists()
        request._request.scp_audit["details"]["consent"] = {"person_id": str(person.pk), "allowed": consented}
        if not consented:
            raise ApiError(403, "consent_denied", "The person's consent for this vertical is not in effect.")
        request._request.scp_audit["details"]["data_categories"] = sorted(fields)
        return Response(minimize(person, fields))
