"""Keycloak: the realm that issues partner machine tokens and staff logins."""
from .base import DEBUG
from .envtools import env, env_int

KEYCLOAK_URL = env("KEYCLOAK_URL", "http://127.0.0.1:8180").rstrip("/")
KEYCLOAK_REALM = env("KEYCLOAK_REALM", "scp")
KEYCLOAK_ISSUER = f"{KEYCLOAK_URL}/realms/{KEYCLOAK_REALM}"
KEYCLOAK_JWKS_URL = f"{KEYCLOAK_ISSUER}/protocol/openid-connect/certs"
KEYCLOAK_TOKEN_URL = f"{KEYCLOAK_ISSUER}/protocol/openid-connect/token"

# The portal's confidential client: staff login and, through its service account,
# provisioning of the integrations' machine clients.
KEYCLOAK_PORTAL_CLIENT_ID = env("KEYCLOAK_PORTAL_CLIENT_ID", "scp-portal")
KEYCLOAK_PORTAL_CLIENT_SECRET = (env("KEYCLOAK_PORTAL_CLIENT_SECRET", "scp-portal-dev-secret") if DEBUG
                                 else env("KEYCLOAK_PORTAL_CLIENT_SECRET"))

# Audience every partner token must carry, and the lifetime of their access tokens.
KEYCLOAK_EXCHANGE_AUDIENCE = env("KEYCLOAK_EXCHANGE_AUDIENCE", "scp-exchange")
# Staff access tokens for the governance API carry this audience (the realm's audience mapper).
KEYCLOAK_GOVERNANCE_AUDIENCE = env("KEYCLOAK_GOVERNANCE_AUDIENCE", "scp-governance")
KEYCLOAK_INTEGRATION_TOKEN_LIFESPAN = env_int("KEYCLOAK_INTEGRATION_TOKEN_LIFESPAN", 300)
KEYCLOAK_TIMEOUT_SECONDS = env_int("KEYCLOAK_TIMEOUT_SECONDS", 10)
# Clock skew tolerated when checking a token's exp / nbf / iat.
SCP_JWT_LEEWAY_SECONDS = env_int("SCP_JWT_LEEWAY_SECONDS", 5)

# Staff browser login (mozilla-django-oidc).
OIDC_RP_CLIENT_ID = KEYCLOAK_PORTAL_CLIENT_ID
OIDC_RP_CLIENT_SECRET = KEYCLOAK_PORTAL_CLIENT_SECRET
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_OP_JWKS_ENDPOINT = KEYCLOAK_JWKS_URL
OIDC_OP_AUTHORIZATION_ENDPOINT = f"{KEYCLOAK_ISSUER}/protocol/openid-connect/auth"
OIDC_OP_TOKEN_ENDPOINT = KEYCLOAK_TOKEN_URL
OIDC_OP_USER_ENDPOINT = f"{KEYCLOAK_ISSUER}/protocol/openid-connect/userinfo"
OIDC_RP_SCOPES = "openid email profile"
# Staff must already be known to the portal: a Keycloak account alone grants nothing here.
OIDC_CREATE_USER = False
LOGIN_REDIRECT_URL = "/admin/"
LOGOUT_REDIRECT_URL = "/admin/"
