"""The governance API of the contract: thin views over lifecycle.services."""
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.models import Integration
from scp_core.models import Person
from lifecycle.consent import consent_record
from scp_core.errors import ApiError

from .. import actions, services
from ..disclosures import CITIZEN_APP, person_disclosures
from ..roles import roles_of
from .authentication import DisclosureReaderAuthentication, StaffTokenAuthentication
from .serializers import ConsentChangeSerializer, DisclosurePageSerializer, IntegrationCreateSerializer, IntegrationSerializer


class GovernanceView(APIView):
    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def visible_integrations(self):
        qs = Integration.objects.visible_to(roles_of(self.request.user))
        return qs.select_related("tenant", "partner", "data_contract__contract", "template", "created_by").prefetch_related(
            "verticals", "other_tenants"
        )


class IntegrationListView(GovernanceView):
    @extend_schema(operation_id="governance_integrations_list", responses=IntegrationSerializer(many=True))
    def get(self, request):
        return Response(IntegrationSerializer(self.visible_integrations(), many=True).data)

    @extend_schema(operation_id="governance_integrations_create", request=IntegrationCreateSerializer,
                   responses={201: IntegrationSerializer})
    def post(self, request):
        serializer = IntegrationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        integration = services.integration_create(
            actor=request.user, request_id=request._request.request_id, **serializer.validated_data
        )
        return Response(IntegrationSerializer(integration).data, status=status.HTTP_201_CREATED)


class IntegrationDetailView(GovernanceView):
    @extend_schema(operation_id="governance_integrations_retrieve", responses=IntegrationSerializer)
    def get(self, request, integration_id):
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        return Response(IntegrationSerializer(integration).data)


class IntegrationActionView(GovernanceView):
    @extend_schema(
        operation_id="governance_integrations_action",
        request=OpenApiTypes.OBJECT,
        responses=IntegrationSerializer,
        description="Take one lifecycle action: " + ", ".join(actions.ACTIONS) + ". `activate` and `rotate-secret` "
        "answer with `client_id` and `client_secret`, shown once; `rotate-secret` and `rotate-api-key` (answering "
        "`api_key`) take `{grace_seconds}` (0 to 604800, default 86400), how long the previous one keeps working, "
        "and answer `previous_valid_until`; `revoke-credential` takes `{credential, reason}`.",
    )
    def post(self, request, integration_id, action):
        if action not in actions.ACTIONS:
            raise ApiError(404, "not_found", f"Unknown action '{action}'.")
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        outcome = actions.take(action, integration=integration, actor=request.user, body=request.data,
                               request_id=request._request.request_id)
        if isinstance(outcome, tuple):  # activate / rotate-secret: the secret, shown once
            integration, credentials = outcome
            body = {**IntegrationSerializer(integration).data, **credentials}
            return Response(body, headers={"Cache-Control": "no-store"})
        return Response(IntegrationSerializer(outcome).data)


class ConsentChangeView(GovernanceView):
    """Record a consent change; effective for every later request, batch row and delivery."""

    @extend_schema(operation_id="governance_consents_create", request=ConsentChangeSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        body = ConsentChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        roles = roles_of(request.user)
        persons = Person.objects.select_related("tenant")
        if not roles.sees_everything:
            persons = persons.filter(tenant_id__in=roles.admin_tenants)  # others' persons: not found
        person = persons.filter(pk=data["person_id"]).first()
        if person is None:
            raise ApiError(404, "not_found", "No such person.")
        consent = consent_record(
            person=person,
            vertical=data["vertical"],
            status=data["status"],
            actor=request.user,
            effective_at=data.get("effective_at"),
            purposes=data.get("purposes"),
            request_id=request._request.request_id,
        )
        return Response(
            {
                "person_id": str(person.pk),
                "vertical": data["vertical"].code,
                "status": consent.status,
                "effective_at": consent.effective_at,
                "purposes": consent.purposes,
            },
            status=status.HTTP_201_CREATED,
        )


class PersonDisclosuresView(GovernanceView):
    """The disclosure ledger of one person (issue #13), newest first, cursor-paged; for the
    tenant admin, the auditor and the platform client `scp-citizen-app`."""

    authentication_classes = [DisclosureReaderAuthentication, SessionAuthentication]

    @extend_schema(operation_id="governance_person_disclosures", responses=DisclosurePageSerializer,
                   parameters=[OpenApiParameter("cursor", OpenApiTypes.INT, required=False),
                               OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="1 to 200")])
    def get(self, request, person_id):
        persons = Person.objects.select_related("tenant")
        if request.user is not CITIZEN_APP:
            roles = roles_of(request.user)
            if not roles.sees_everything:
                persons = persons.filter(tenant_id__in=roles.admin_tenants)  # others' persons: not found
        person = persons.filter(pk=person_id).first()
        if person is None:
            raise ApiError(404, "not_found", "No such person.")
        try:
            cursor = int(request.query_params.get("cursor") or 0) or None
            limit = int(request.query_params.get("limit") or 50)
        except ValueError as exc:
            raise ApiError(422, "validation_error", "'cursor' and 'limit' must be integers.") from exc
        page = person_disclosures(viewer=request.user, person=person, cursor=cursor, limit=limit, via="api",
                                  request_id=request._request.request_id)
        next_url = None
        if page.next_cursor is not None:
            next_url = request.build_absolute_uri(f"{request.path}?cursor={page.next_cursor}&limit={limit}")
        return Response(DisclosurePageSerializer({"results": page.entries, "withheld": page.withheld,
                                                  "next": next_url}).data)
