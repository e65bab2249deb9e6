"""Request ids for every request, and problem+json for API errors raised outside the views."""
import logging
import uuid

from .problems import problem_response

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give every request an id (or keep a well-formed one from the caller) and echo it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _is_uuid(incoming) else str(uuid.uuid4())
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ApiProblemMiddleware:
    """Under /api/, unmatched URLs and unhandled exceptions answer in problem+json, never HTML."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith("application/problem+json")
        ):
            return problem_response(request, status_code=404, code="not_found", detail="Not found.")
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        logger.exception("Unhandled error on %s (request %s)", request.path, getattr(request, "request_id", ""))
        return problem_response(
            request, status_code=500, code="server_error", detail="An internal error occurred."
        )
