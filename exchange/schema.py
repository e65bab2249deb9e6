"""The OpenAPI description of the partner bearer scheme (loaded by the app's ready())."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PartnerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "exchange.authentication.IntegrationTokenAuthentication"
    name = "partnerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Access token of the integration's Keycloak client (client-credentials grant), "
            "carrying tenant_id, integration_id, verticals and the audience scp-exchange.",
        }
