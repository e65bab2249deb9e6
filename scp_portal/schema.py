"""OpenAPI descriptions of the two bearer schemes (loaded by the apps' ready())."""
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


class StaffTokenScheme(OpenApiAuthenticationExtension):
    target_class = "lifecycle.api.authentication.StaffTokenAuthentication"
    name = "staffToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A staff user's access token from the realm scp."}
