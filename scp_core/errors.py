"""The shared error types, at the bottom of the layers: any service, job or policy check
raises them, and the APIs map them to RFC 9457 problem details (`scp_portal.problems`).
Free of HTTP machinery: a status and a contract code are just data here."""


class ApiError(Exception):
    """An error with the contract's code; raise it anywhere to answer with a problem."""

    def __init__(self, status_code, code, detail, errors=None, headers=None):
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        super().__init__(detail)


class PermissionDeniedError(ApiError):
    def __init__(self, detail="You may not take this action.", code="permission_denied"):
        super().__init__(403, code, detail)


class InvalidTransitionError(ApiError):
    def __init__(self, detail):
        super().__init__(409, "invalid_transition", detail)


class ValidationFailedError(ApiError):
    def __init__(self, detail, errors=None):
        super().__init__(422, "validation_error", detail, errors=errors)


class UpstreamUnavailableError(ApiError):
    def __init__(self, detail):
        super().__init__(503, "upstream_unavailable", detail)
