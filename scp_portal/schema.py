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


_PROBLEM_TYPE = "application/problem+json"


def problem_responses_hook(result, generator, request, public):
    """Postprocessing hook: every error response of every operation (and the 401 and 403
    that authentication adds) is documented as RFC 9457 problem details, which is what the
    APIs send; an operation that declares none gets the problem shape for them anyway."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status in ("401", "403", "413", "429", "500"):  # what the guard answers on any operation
                operation["responses"].setdefault(status, {"description": "problem details"})
            for status, response in operation["responses"].items():
                if not str(status).isdigit() or int(status) < 400:
                    continue
                content = response.get("content") or {}
                schema = next(iter(content.values()), {}).get("schema") or {"$ref": "#/components/schemas/Problem"}
                response["content"] = {_PROBLEM_TYPE: {"schema": schema}}
    return result
