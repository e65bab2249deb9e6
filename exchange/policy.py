"""The policy decisions of the exchange, in the order every request meets them (issue #4):
token → integration state and window → layered controls → rate limit → tenant → verticals →
consent → minimization. Each check allows or raises a denial carrying its contract code."""
import re

from audit.services import IncidentKind, IncidentSeverity, incident_open
from lifecycle import credentials
from registry.models import IntegrationStatus
from scp_core.errors import ApiError

from . import controls, ratelimit, scope

S = IntegrationStatus
_VERTICAL_CODE = re.compile(r"[a-z0-9_-]{1,40}")


def check_integration_state(integration, method, at=None):
    """Active serves all; Restricted reads only; Deprecated serves with headers; else refused."""
    denied = scope.refusal(integration, write=method not in scope.READ_METHODS, at=at)
    if denied is not None:
        raise denied


def check_gate(principal, request):
    """Everything decided before a handler runs; returns the rate-limit headers."""
    integration = principal.integration
    check_integration_state(integration, request.method)
    controls.check_ip_allowlist(integration, controls.client_ip(request))
    controls.check_api_key(integration, request)
    controls.check_client_certificate(integration, request)
    credentials.token_seen(integration)  # its client secret's last use, written at most once a minute
    return ratelimit.hit(integration)


def mis_scoped(integration, request_id, detail, *, kind=IncidentKind.MIS_SCOPED_REQUEST, client_id=""):
    """§10: a mis-scoped request is denied at once and opens an incident of its kind (repeats
    are counted on the open one)."""
    incident_open(
        kind=kind,
        severity=IncidentSeverity.MEDIUM,
        summary=f"{integration.integration_name}: {detail}",
        tenant=integration.tenant,
        integration=integration,
        request_id=request_id,
        details={"client_id": client_id},
        grouped=True,
    )


def require_vertical(principal, vertical_code, request_id, *, scope):
    """The one vertical a request names must lie in the strictest intersection of the token's
    verticals and the integration's effective `scope` (read scope or write scope)."""
    if not vertical_code:
        raise ApiError(422, "validation_error", "The 'vertical' parameter is required.",
                       errors=[{"field": "vertical", "message": "required"}])
    if not _VERTICAL_CODE.fullmatch(vertical_code):
        raise ApiError(422, "validation_error", "The 'vertical' parameter is not a vertical code.",
                       errors=[{"field": "vertical", "message": "lowercase letters, digits, '_' or '-'"}])
    if vertical_code not in principal.token_verticals or vertical_code not in scope:
        detail = f"Vertical '{vertical_code}' is not permitted to this integration."
        mis_scoped(principal.integration, request_id, detail, client_id=principal.client_id)
        raise ApiError(403, "vertical_not_permitted", detail)
    return vertical_code


def deprecation_headers(integration):
    if integration.status != S.DEPRECATED:
        return {}
    headers = {"Deprecation": "true"}
    if integration.replacement_id:
        headers["Link"] = f'</api/v1/integrations/{integration.replacement_id}/>; rel="successor-version"'
    return headers
