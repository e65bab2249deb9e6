"""Real-time request/response endpoints: persons, records (read and push), aggregates."""

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import ExtractYear
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from scp_core.models import Consent, Person, VerticalRecord
from scp_portal.problems import ApiError

from .. import pushes
from ..masking import minimize
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
        # Rows, not model instances: building 100 Person objects per page cost more than the query.
        page = paginator.paginate_queryset(persons.values(*{"id", *fields}), request, view=self)
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
