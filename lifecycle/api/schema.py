"""The OpenAPI description of the staff bearer scheme (loaded by the app's ready())."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class StaffTokenScheme(OpenApiAuthenticationExtension):
    target_class = "lifecycle.api.authentication.StaffTokenAuthentication"
    name = "staffToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A staff user's access token from the realm scp."}


class DisclosureReaderScheme(StaffTokenScheme):
    target_class = "lifecycle.api.authentication.DisclosureReaderAuthentication"
    name = "disclosureReaderToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A staff user's access token, or the platform client scp-citizen-app's."}
