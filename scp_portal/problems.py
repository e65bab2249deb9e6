"""RFC 9457 problem details: the one error shape of every API response that is not 2xx."""
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from registry.models import ImmutableError
from scp_core.errors import ApiError, InvalidTransitionError

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_body(*, status_code, code, detail, request_id, errors=None):
    return {
        "type": f"https://scp.example/problems/{code}",
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
        "request_id": request_id,
        "errors": errors or [],
    }


def problem_response(request, *, status_code, code, detail, errors=None):
    """A plain Django response for errors raised outside DRF (404, 500 handlers, middleware)."""
    body = problem_body(
        status_code=status_code,
        code=code,
        detail=detail,
        request_id=getattr(request, "request_id", ""),
        errors=errors,
    )
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _translate(exc):
    """Map DRF's own exceptions onto the contract's codes."""
    if isinstance(exc, ApiError):
        return exc.status_code, exc.code, str(exc.detail), exc.errors, exc.headers
    if isinstance(exc, exceptions.ValidationError):
        return 422, "validation_error", "The request is not valid.", _flatten(exc.detail), {}
    if isinstance(exc, exceptions.ParseError):
        return 422, "validation_error", str(exc.detail), [], {}
    if isinstance(exc, exceptions.NotAuthenticated):
        return 401, "token_missing", str(exc.detail), [], {}
    if isinstance(exc, exceptions.AuthenticationFailed):
        return 401, "token_invalid", str(exc.detail), [], {}
    if isinstance(exc, exceptions.PermissionDenied):
        return 403, "permission_denied", str(exc.detail), [], {}
    if isinstance(exc, exceptions.NotFound):
        return 404, "not_found", str(exc.detail), [], {}
    if isinstance(exc, exceptions.MethodNotAllowed):
        return 405, "method_not_allowed", str(exc.detail), [], {}
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return 415, "unsupported_media_type", str(exc.detail), [], {}
    if isinstance(exc, exceptions.Throttled):
        headers = {"Retry-After": str(int(exc.wait or 1))}
        return 429, "rate_limited", str(exc.detail), [], headers
    if isinstance(exc, exceptions.APIException):
        return exc.status_code, "server_error" if exc.status_code >= 500 else "validation_error", str(exc.detail), [], {}
    return None


def _flatten(detail, prefix=""):
    """Turn DRF's nested validation detail into a flat list of {field, message}."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            out.extend(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
        return out
    if isinstance(detail, list):
        out = []
        for item in detail:
            out.extend(_flatten(item, prefix))
        return out
    return [{"field": prefix or None, "message": str(detail)}]


def exception_handler(exc, context):
    """DRF exception handler: every handled error becomes application/problem+json."""
    if isinstance(exc, ImmutableError):
        exc = InvalidTransitionError(str(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    translated = _translate(exc)
    if translated is None:
        return None  # unexpected: the middleware answers 500 server_error
    status_code, code, detail, errors, headers = translated
    request = context.get("request")
    body = problem_body(
        status_code=status_code,
        code=code,
        detail=detail,
        request_id=getattr(request, "request_id", "") if request else "",
        errors=errors,
    )
    response = Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    response.problem_code = code
    return response


__all__ = ["PROBLEM_CONTENT_TYPE", "exception_handler", "problem_response"]
