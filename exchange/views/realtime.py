"""Real-time request/response endpoints: persons, records (read and push), aggregates."""

from django.conf import settings
from django.db.models import Count, F
from django.db.models.functions import ExtractYear
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from audit.models import DisclosureChannel as Channel
from scp_core.errors import ApiError

from .. import disclosure, pushes
from ..serializers import (
    AggregateSerializer,
    MinimizedPersonSerializer,
    PersonPageSerializer,
    ProblemSerializer,
    RecordPageSerializer,
    RecordPushSerializer,
    RecordSerializer,
)
from .base import (
    ERRORS,
    PAGE_PARAMS,
    UPDATED_SINCE,
    VERTICAL_PARAM,
    ExchangeCursorPagination,
    GovernedAPIView,
)


class PersonListView(GovernedAPIView):
    @extend_schema(operation_id="persons_list", parameters=[VERTICAL_PARAM, UPDATED_SINCE, *PAGE_PARAMS], responses={200: PersonPageSerializer, **ERRORS})
    def get(self, request):
        """Persons of the integration's tenant with consent in effect now for the vertical, minimized."""
        data_scope = self.read_scope()
        fields = data_scope.person_fields
        persons = data_scope.persons()
        since = self.updated_since()
        if since is not None:
            persons = persons.filter(updated_at__gte=since)
        paginator = ExchangeCursorPagination()
        # Rows, not model instances: building 100 Person objects per page cost more than the query.
        page = paginator.paginate_queryset(persons.values(*{"id", *fields}), request, view=self)
        self.audit_details(consent={"checked": "in_effect filter", "allowed": len(page)})
        for row in page:  # as text once, for the ledger and the response alike
            row["id"] = str(row["id"])
        self.disclose(data_scope.release(Channel.API_LIST, [row["id"] for row in page]))
        return paginator.get_paginated_response([data_scope.minimize_person(row) for row in page])


class PersonDetailView(GovernedAPIView):
    @extend_schema(operation_id="persons_retrieve", parameters=[VERTICAL_PARAM], responses={200: MinimizedPersonSerializer, **ERRORS})
    def get(self, request, person_id):
        """One person of the integration's tenant: 404 for any other tenant, 403 without consent."""
        data_scope = self.read_scope()
        person = self.in_scope_or_404(data_scope.tenant_persons(), person_id)
        refused = data_scope.consent_refusal(person.pk)
        self.audit_details(consent={"checked": 1, "allowed": int(refused is None), "denied": [str(person.pk)] if refused else []})
        if refused is not None:
            raise refused
        self.disclose(data_scope.release(Channel.API_DETAIL, [person.pk]))
        return Response(data_scope.minimize_person(person))


class RecordListView(GovernedAPIView):
    @extend_schema(operation_id="records_list", parameters=[VERTICAL_PARAM, UPDATED_SINCE, *PAGE_PARAMS], responses={200: RecordPageSerializer, **ERRORS})
    def get(self, request):
        """Records of the contract's record types in the vertical, of consenting persons of the tenant."""
        data_scope = self.read_scope()
        records = data_scope.records()
        since = self.updated_since()
        if since is not None:
            records = records.filter(updated_at__gte=since)
        paginator = ExchangeCursorPagination()
        page = paginator.paginate_queryset(records, request, view=self)
        self.audit_details(consent={"checked": "in_effect filter", "allowed": len(page)},
                           record_types=sorted(data_scope.record_rules))
        released = [data_scope.minimize_record(r) for r in page]
        self.disclose(*data_scope.record_release(Channel.RECORDS, released))
        return paginator.get_paginated_response(released)

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
            request_id=request._request.request_id,
        )
        return Response(payload, status=status)


# group_by -> (the person field it reveals, the masking rules under which the integration may
# see what the cells are labelled with, the expression grouped on)
GROUPS = {
    "district": ("district", {"plain"}, F("district")),
    "sex": ("sex", {"plain"}, F("sex")),
    "birth_year": ("birth_date", {"plain", "year"}, ExtractYear("birth_date")),
}


class AggregateView(GovernedAPIView):
    @extend_schema(
        operation_id="aggregates_retrieve",
        parameters=[VERTICAL_PARAM, OpenApiParameter("group_by", OpenApiTypes.STR, enum=sorted(GROUPS), required=False)],
        responses={200: AggregateSerializer, **ERRORS},
    )
    def get(self, request):
        """Counts of consenting persons of the tenant, with disclosure control
        (`exchange.disclosure`: primary and secondary suppression)."""
        data_scope = self.read_scope()
        group_by = request.query_params.get("group_by") or None
        if group_by is not None and group_by not in GROUPS:
            raise ApiError(422, "validation_error", f"'group_by' must be one of {', '.join(sorted(GROUPS))}.",
                           errors=[{"field": "group_by", "message": "unknown grouping"}])
        if group_by is not None:
            field, rules, _expression = GROUPS[group_by]
            # Labels would unmask a masked field (a hashed district counted per cell gives the
            # hashes back their names): only fields read in the clear, or at this precision.
            if data_scope.person_fields.get(field) not in rules:
                raise ApiError(403, "permission_denied", f"'{group_by}' is not a field this integration may read unmasked.")
        threshold = settings.SCP_AGGREGATE_MIN_CELL
        persons = data_scope.persons()
        cells = []
        if group_by is None:
            total = persons.count()
        else:
            expression = GROUPS[group_by][2]
            rows = persons.annotate(cell=expression).values("cell").annotate(n=Count("id")).order_by()
            counts = {row["cell"]: row["n"] for row in rows}
            total = sum(counts.values())
            cells = disclosure.protect(counts, threshold)
        self.audit_details(consent={"checked": "in_effect filter", "aggregated": total}, aggregate=group_by or "total")
        small_total = total < threshold
        return Response({
            "vertical": data_scope.vertical,
            "group_by": group_by,
            "min_cell": threshold,
            "total": None if small_total else total,
            "total_suppressed": small_total,
            "cells": cells,
        })
