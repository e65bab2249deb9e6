"""Request ids for every request, and the guard of everything under /api/: body limits before
any parsing, problem+json for errors raised outside the views, throttled unauthenticated
failures, and exactly one audit record per response."""
import json
import logging
import re
import time
import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from audit.services import AuditEvent, AuditResult, IncidentKind, IncidentSeverity, audit_record, incident_open
from exchange import controls, ratelimit

from .problems import ApiError, problem_response

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give every request the server's own id; a well-formed id sent by the caller is kept
    beside it (`X-Client-Request-ID`, and in the audit), never instead of it: a caller must not
    be able to make its requests share an id with another's."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = str(uuid.uuid4())
        request.client_request_id = incoming if _is_uuid(incoming) else ""
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        if request.client_request_id:
            response["X-Client-Request-ID"] = request.client_request_id
        return response


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_AUDITED_PREFIX = "/api/v1/"


# An agreement upload of the governance API (issue #14): its document may be larger than a body.
_AGREEMENT_UPLOAD = re.compile(r"^/api/v1/governance/integrations/[0-9a-fA-F-]{32,36}/agreements/$")


def _body_limit(request):
    if request.method == "POST" and request.path == "/api/v1/imports/":
        return settings.SCP_MAX_IMPORT_BYTES + 1024 * 1024  # the file, and its multipart envelope
    if request.method == "POST" and _AGREEMENT_UPLOAD.match(request.path):
        return settings.SCP_AGREEMENT_MAX_BYTES + 64 * 1024  # the document, its terms and the envelope
    return settings.SCP_MAX_API_BODY_BYTES


class ApiGuardMiddleware:
    """Under /api/: a body over the limit is refused from its Content-Length before anything
    reads it (413); unmatched URLs and unhandled exceptions answer in problem+json, never HTML;
    failed authentications are counted per source address and, past a limit, answered with
    429; and every response under /api/v1/ leaves exactly one audit record
    (the exchange views write their own, richer one; this writes it for every other response,
    500s included), except that an address's unauthenticated failures leave one per window."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        started = time.perf_counter()
        request.scp_audited = False
        request.scp_source_ip = controls.client_ip(request)
        response = self._refuse_oversized(request) or self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith("application/problem+json"):
            response = problem_response(request, status_code=404, code="not_found", detail="Not found.")
        if 400 <= response.status_code < 500 and not _authenticated(request):
            response = self._count_anonymous_failure(request, response)
        if request.path.startswith(_AUDITED_PREFIX) and not request.scp_audited:
            try:
                _audit_fallback(request, response, started)
            except DatabaseError as exc:  # the audit lives in the database that is down: say so, loudly
                logger.critical("Request %s could not be audited: %s", request.request_id, exc)
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, (OperationalError, InterfaceError)):
            # The database is unreachable: an outage like the broker's, to be retried (§10).
            logger.error("Database unavailable on %s (request %s): %s", request.path, request.request_id, exception)
            response = problem_response(request, status_code=503, code="upstream_unavailable",
                                        detail="The database is unavailable; retry later.")
            response["Retry-After"] = str(settings.SCP_DATABASE_RETRY_AFTER_SECONDS)
            return response
        logger.exception("Unhandled error on %s (request %s)", request.path, getattr(request, "request_id", ""))
        return problem_response(
            request, status_code=500, code="server_error", detail="An internal error occurred."
        )

    @staticmethod
    def _refuse_oversized(request):
        limit = _body_limit(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = limit + 1
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length <= limit and not chunked:
            return None
        return problem_response(request, status_code=413, code="payload_too_large",
                                detail=f"The body may be at most {limit} bytes, with a Content-Length.")

    @staticmethod
    def _count_anonymous_failure(request, response):
        """§10: refusals of requests that no one authenticated for (a bad or missing token, an
        unknown URL, an oversized body) are counted per source address and window. Past
        SCP_AUTH_FAILURE_LIMIT the address is answered 429 until the window ends (counted only
        when a request fails, so a valid one pays nothing for it); at the threshold an incident
        opens; only the first refusal of a window is audited, carrying the count of the window
        before it, so a flood cannot fill the append-only audit log."""
        source_ip = request.scp_source_ip
        try:
            failures, reset = ratelimit.count(f"authfail:{source_ip}")
            previous = ratelimit.previous_window(f"authfail:{source_ip}") if failures == 1 else None
        except ApiError:
            return response  # the counter is down: the request was refused anyway
        request.scp_audited = request.scp_audited or failures > 1
        request.scp_audit_extra = {"unauthenticated_refusals": {"window": "1 min", "previous_window": previous}}
        if failures == settings.SCP_AUTH_FAILURE_THRESHOLD:
            incident_open(
                kind=IncidentKind.AUTHENTICATION_FAILURES, severity=IncidentSeverity.MEDIUM,
                summary=f"{failures} unauthenticated requests refused from {source_ip} within a minute",
                request_id=request.request_id, details={"source_ip": source_ip},
            )
        if failures <= settings.SCP_AUTH_FAILURE_LIMIT:
            return response
        throttled = problem_response(request, status_code=429, code="rate_limited",
                                     detail="Too many failed authentications from this address; retry later.")
        throttled["Retry-After"] = str(reset)
        return throttled


def _authenticated(request):
    """Whether someone was established for this request: an integration's token (the exchange
    records it as it authenticates) or a staff user."""
    if getattr(request, "scp_audit", {}).get("integration") is not None:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and getattr(user, "is_authenticated", False))


def _audit_fallback(request, response, started):
    """The audit record of an API response that no view recorded: governance requests, and
    requests refused or failed before or outside a view (413, 404, 500, 401)."""
    status = response.status_code
    context = getattr(request, "scp_audit", {})
    integration = context.get("integration")
    user = getattr(request, "user", None)
    principal = user if user is not None and getattr(user, "is_authenticated", False) else None
    staff = principal if isinstance(principal, AbstractBaseUser) else None
    # A platform client (scp-citizen-app) is no user row: recorded by its name; a partner by its
    # client id.
    named = getattr(principal, "get_username", None) if staff is None else None
    actor = named() if named is not None else context.get("client_id", "")
    result = AuditResult.of_status(status)
    code = getattr(response, "problem_code", "") or _problem_code(response)
    audit_record(
        event_type=AuditEvent.API_REQUEST, result=result,
        tenant=integration.tenant if integration else None, integration=integration,
        actor_user=staff, actor="" if staff is not None else actor,
        client_id=context.get("client_id", ""), request_id=request.request_id,
        source_ip=getattr(request, "scp_source_ip", None) or request.META.get("REMOTE_ADDR"),
        verticals=context.get("verticals", []), status_code=status, error_code=code,
        details={"method": request.method, "path": request.path[:300], "client_request_id": request.client_request_id,
                 "latency_ms": round((time.perf_counter() - started) * 1000, 2), **getattr(request, "scp_audit_extra", {})},
    )
    request.scp_audited = True


def _problem_code(response):
    if not response.get("Content-Type", "").startswith("application/problem+json"):
        return ""
    try:
        return json.loads(response.content).get("code", "")
    except (ValueError, AttributeError):
        return ""
