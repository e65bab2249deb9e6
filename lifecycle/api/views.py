"""The governance API of the contract: thin views over lifecycle.services."""
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
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
from ..roles import roles_of
from .authentication import StaffTokenAuthentication
from .serializers import ConsentChangeSerializer, IntegrationCreateSerializer, IntegrationSerializer


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
        "answer with `client_id` and `client_secret`, shown once.",
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
            request_id=request._request.request_id,
        )
        return Response(
            {
                "person_id": str(person.pk),
                "vertical": data["vertical"].code,
                "status": consent.status,
                "effective_at": consent.effective_at,
            },
            status=status.HTTP_201_CREATED,
        )
