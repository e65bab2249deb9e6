"""What a partner may learn of integrations: its own, and the one that replaces it (named by
the `Link: <...>; rel="successor-version"` header of a deprecated integration)."""
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from registry.models import Integration
from scp_core.errors import ApiError

from ..serializers import IntegrationDescriptionSerializer
from .base import ERRORS, GovernedAPIView


class IntegrationDescriptionView(GovernedAPIView):
    @extend_schema(operation_id="integrations_retrieve", responses={200: IntegrationDescriptionSerializer, **ERRORS})
    def get(self, request, integration_id):
        """The calling integration or its successor: name, state, verticals, data contract and
        active window. Any other integration is not found."""
        own = self.principal.integration
        integration = None
        if integration_id in {own.pk, own.replacement_id}:
            integration = Integration.objects.select_related("data_contract__contract").prefetch_related("verticals").get(
                pk=integration_id)
        if integration is None or integration.partner_id != own.partner_id:  # another partner's: not found
            raise ApiError(404, "not_found", "No such integration.")
        self.audit_details(integration_described=str(integration.pk))
        return Response({
            "integration_id": str(integration.pk),
            "integration_name": integration.integration_name,
            "status": integration.status,
            "verticals": integration.vertical_codes(),
            "data_contract_ref": integration.data_contract_ref,
            "active_from": integration.active_from,
            "active_until": integration.active_until,
        })
