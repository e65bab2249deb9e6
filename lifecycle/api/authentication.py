"""Staff authentication for the governance API: a Keycloak user token of the `scp` realm
(from `scp-portal` or, in dev/test, `scp-cli`), verified locally and mapped to a portal user."""
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.authentication import BaseAuthentication

from scp_core.errors import ApiError

from .. import tokens
from ..disclosures import CITIZEN_APP

STAFF_CLIENTS = {"scp-portal", "scp-cli"}
CITIZEN_APP_CLIENT = "scp-citizen-app"


class StaffTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        if "HTTP_AUTHORIZATION" not in request.META:
            return None  # let session authentication (the portal) have a go
        # An access token (not an ID or refresh token) issued for the governance API: a token
        # of another audience, a partner's included, is no staff credential.
        claims = tokens.verify(tokens.bearer_token(request), audience=settings.KEYCLOAK_GOVERNANCE_AUDIENCE)
        return self.principal(claims)

    def principal(self, claims):
        if claims.get("typ") != "Bearer" or claims.get("azp") not in STAFF_CLIENTS or not claims.get("preferred_username"):
            raise ApiError(401, "token_invalid", "The token is not a staff user token of the portal.")
        user = get_user_model().objects.filter(username=claims["preferred_username"], is_active=True).first()
        if user is None:
            raise ApiError(403, "permission_denied", "This user has no access to the portal.")
        return user, claims

    def authenticate_header(self, request):
        return 'Bearer realm="scp"'


class DisclosureReaderAuthentication(StaffTokenAuthentication):
    """Staff, or the platform client `scp-citizen-app`, whose only right is reading a person's
    disclosures: every other governance view authenticates staff only, so its token is refused
    there (and the exchange API wants another audience)."""

    def principal(self, claims):
        if claims.get("azp") == CITIZEN_APP_CLIENT:
            if claims.get("typ") != "Bearer":
                raise ApiError(401, "token_invalid", "The token is not an access token.")
            return CITIZEN_APP, claims
        return super().principal(claims)
