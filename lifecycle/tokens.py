"""Local verification of Keycloak-issued JWTs against the realm's JWKS.

One module-level JWKS client caches the realm's keys and refetches them when a token names
an unknown `kid` (key rotation), so no request calls Keycloak in the steady state.
"""
import jwt
from django.conf import settings

from scp_core.errors import ApiError

_jwks_client = None


def _jwks():
    global _jwks_client
    if _jwks_client is None:
        _jwks_client = jwt.PyJWKClient(settings.KEYCLOAK_JWKS_URL, cache_keys=True, lifespan=3600, timeout=5,
                                         cooldown_duration=30)
    return _jwks_client


def verify(raw_token, *, audience=None):
    """Verify signature, `iss`, `exp`, `iat`, `nbf` (and `aud` when given); return the claims,
    with the signing key's id added as `_kid` (for the audit).

    Raises ApiError 401 token_invalid / token_expired, or 503 when the keys cannot be had.
    """
    try:
        signing_key = _jwks().get_signing_key_from_jwt(raw_token)
    except jwt.PyJWKClientConnectionError as exc:
        raise ApiError(503, "upstream_unavailable", "The identity provider's keys cannot be fetched.") from exc
    except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
        raise ApiError(401, "token_invalid", "The token is not signed by a key of the realm.") from exc
    required = ["exp", "iat", "iss"] + (["aud"] if audience else [])
    try:
        claims = jwt.decode(
            raw_token,
            signing_key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=settings.KEYCLOAK_ISSUER,
            leeway=settings.SCP_JWT_LEEWAY_SECONDS,
            options={"require": required, "verify_aud": audience is not None, "verify_nbf": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise ApiError(401, "token_expired", "The token has expired.") from exc
    except jwt.ImmatureSignatureError as exc:
        raise ApiError(401, "token_invalid", "The token is not valid yet.") from exc
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "token_invalid", f"The token is not valid: {exc}.") from exc
    claims["_kid"] = signing_key.key_id
    return claims


def bearer_token(request):
    """The raw bearer token of the request; 401 token_missing / token_invalid otherwise."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise ApiError(401, "token_missing", "A bearer token is required.")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise ApiError(401, "token_invalid", "The Authorization header must be 'Bearer <token>'.")
    return raw.strip()
