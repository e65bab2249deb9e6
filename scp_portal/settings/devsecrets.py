"""With DEBUG off the portal refuses to start on any development secret, naming each one.

The embedded default and the tests use well-known values (in this repository, in the dev
realm file): accepted with DEBUG on only. The one exception is the benchmark, which runs with
DEBUG off against the development Keycloak realm on this machine: it may keep that realm's
portal client secret by saying so (`SCP_BENCH_DEV_REALM=true`), and only for a Keycloak on
loopback.
"""
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .envtools import env_bool

DEVELOPMENT_VALUES = {
    "SECRET_KEY": {"dev-insecure-secret-key-change-me", "build"},
    "SCP_PSEUDONYM_KEY": {"dev-pseudonym-key", "build"},
    "SCP_AUDIT_SIGNING_KEY": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
    "KEYCLOAK_PORTAL_CLIENT_SECRET": {"scp-portal-dev-secret"},
    "SCP_METRICS_TOKEN": {"scp-metrics-dev-token"},
}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def development_secrets_in(settings):
    """The names of the settings that hold a development value (or a derived dev key)."""
    found = [name for name, values in DEVELOPMENT_VALUES.items() if settings.get(name) in values]
    if settings.get("SCP_AUDIT_SIGNING_KEY") == settings.get("_dev_key"):
        found.append("SCP_AUDIT_SIGNING_KEY")
    if "KEYCLOAK_PORTAL_CLIENT_SECRET" in found and env_bool("SCP_BENCH_DEV_REALM", False) \
            and urlsplit(settings.get("KEYCLOAK_URL", "")).hostname in _LOOPBACK:
        found.remove("KEYCLOAK_PORTAL_CLIENT_SECRET")
    return sorted(set(found))


def refuse_development_secrets(settings):
    if settings.get("DEBUG"):
        return
    found = development_secrets_in(settings)
    if found:
        raise ImproperlyConfigured(
            "Development secrets are not accepted with DJANGO_DEBUG=false; set your own: " + ", ".join(found))
