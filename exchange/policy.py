"""The policy decisions of the exchange: each check allows or raises a denial with its code."""
from django.utils import timezone

from registry.models import IntegrationStatus
from scp_portal.problems import ApiError

S = IntegrationStatus
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def check_integration_state(integration, method, at=None):
    """Active serves all; Restricted reads only; Deprecated serves with headers; else refused."""
    status = integration.status
    if status == S.SUSPENDED:
        raise ApiError(403, "integration_suspended", "The integration is suspended.")
    if status == S.RESTRICTED and method not in _READ_METHODS:
        raise ApiError(403, "integration_restricted", "The integration is restricted to reads.")
    if status not in {S.ACTIVE, S.RESTRICTED, S.DEPRECATED}:
        raise ApiError(403, "integration_not_active", f"The integration is {status}, not active.")
    if not integration.is_in_active_window(at or timezone.now()):
        raise ApiError(403, "outside_active_window", "The integration is outside its active window.")


def check_vertical(principal, vertical_code):
    """The one vertical a request asks for must lie in the effective scope: the strictest
    intersection of the token's verticals and the integration's effective read scope."""
    if not vertical_code:
        raise ApiError(422, "validation_error", "The 'vertical' parameter is required.",
                       errors=[{"field": "vertical", "message": "required"}])
    if vertical_code not in principal.token_verticals or vertical_code not in principal.read_fields:
        raise ApiError(403, "vertical_not_permitted", f"Vertical '{vertical_code}' is not permitted to this integration.")
    return vertical_code


def deprecation_headers(integration):
    if integration.status != S.DEPRECATED:
        return {}
    headers = {"Deprecation": "true"}
    if integration.replacement_id:
        headers["Link"] = f'</api/v1/integrations/{integration.replacement_id}>; rel="successor-version"'
    return headers
