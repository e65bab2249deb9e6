"""Partner authentication: a Keycloak machine-client JWT, verified locally, bound to the
integration it names. Nothing else is accepted on the exchange API."""
import uuid
from dataclasses import dataclass, field
from functools import cached_property

from django.conf import settings
from rest_framework.authentication import BaseAuthentication

from audit.models import IncidentKind
from lifecycle import tokens
from registry.models import Integration
from scp_core.errors import ApiError

from . import policy


@dataclass
class PartnerPrincipal:
    """Who is calling: the integration, its verified claims and its client."""

    integration: Integration
    claims: dict
    client_id: str
    token_verticals: frozenset = field(default_factory=frozenset)
    is_authenticated: bool = True

    @property
    def read_fields(self):
        """{vertical: {field: rule}} this integration may read, as fixed at its activation."""
        return self.integration.read_scope

    @cached_property
    def write_scope(self):
        """{vertical: {record_type: JSON Schema}} it may write (declared verticals × contract)."""
        return {v.code: self.integration.writable_record_types(v.code) for v in self.integration.verticals.all()}


class IntegrationTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        claims = tokens.verify(tokens.bearer_token(request), audience=settings.KEYCLOAK_EXCHANGE_AUDIENCE)
        audit = getattr(request._request, "scp_audit", {})
        audit["client_id"] = claims.get("azp", "")
        audit["token"] = {k: claims.get(k) for k in ("jti", "iat", "exp")} | {"kid": claims.get("_kid")}
        integration = _integration_of(claims)
        audit["integration"] = integration
        verticals = claims.get("verticals")
        if not isinstance(verticals, list) or not all(isinstance(v, str) for v in verticals):
            raise ApiError(401, "token_invalid", "The token's 'verticals' claim must be a list of codes.")
        # The token must come from this integration's own client and agree with its record.
        request_id = getattr(request._request, "request_id", "")
        if not integration.auth_client_id or claims.get("azp") != integration.auth_client_id:
            detail = "The token was not issued to this integration's client."
            policy.mis_scoped(integration, request_id, detail, kind=IncidentKind.FOREIGN_CLIENT, client_id=claims.get("azp", ""))
            raise ApiError(403, "permission_denied", detail)
        if claims.get("tenant_id") != integration.tenant.code:
            detail = "The token's tenant does not match the integration's tenant."
            policy.mis_scoped(integration, request_id, detail, kind=IncidentKind.TENANT_MISMATCH, client_id=claims.get("azp", ""))
            raise ApiError(403, "tenant_mismatch", detail)
        principal = PartnerPrincipal(
            integration=integration,
            claims=claims,
            client_id=claims["azp"],
            token_verticals=frozenset(verticals),
        )
        return principal, claims

    def authenticate_header(self, request):
        return 'Bearer realm="scp-exchange"'


def _integration_of(claims):
    try:
        integration_id = uuid.UUID(str(claims.get("integration_id")))
    except ValueError as exc:
        raise ApiError(401, "token_invalid", "The token carries no valid 'integration_id'.") from exc
    try:  # get(), not first(): no ORDER BY to build and plan for a lookup by primary key
        return Integration.objects.for_token(integration_id).get()
    except Integration.DoesNotExist as exc:
        raise ApiError(403, "permission_denied", "The token names no known integration.") from exc
