"""Test settings: the real services only (PostgreSQL, Redis, Keycloak), never SQLite."""
import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from . import *  # noqa: F401,F403
from .database import DATABASES
from .envtools import env

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "The test suite runs on PostgreSQL: set DATABASE_URL (make test does it for you)."
    )
if "purge" not in DATABASES or not env("DATABASE_OWNER_URL", ""):
    raise ImproperlyConfigured(
        "The test suite proves each database role's rights: set DATABASE_OWNER_URL and "
        "DATABASE_PURGE_URL beside DATABASE_URL (make test does it for you)."
    )

# The test database is created and migrated by the owner, as a deployment's `migrate` is;
# tests/conftest.py then runs the tests as the application role (DATABASE_URL) and the purge
# as the purge role, and empties the tables between transactional tests as the owner.
SCP_TEST_APP_DATABASE = {**DATABASES["default"], "OPTIONS": {**DATABASES["default"].get("OPTIONS", {})}}
_owner = dj_database_url.parse(env("DATABASE_OWNER_URL"))
DATABASES["default"].update(USER=_owner["USER"], PASSWORD=_owner["PASSWORD"])
# Between transactional tests Django empties every table with TRUNCATE; the append-only audit
# triggers let that through only in a maintenance session (see audit/migrations/0003).
_options = DATABASES["default"].get("OPTIONS", {})
DATABASES["default"]["OPTIONS"] = {**_options, "options": f"{_options.get('options', '')} -c scp.audit_maintenance=on".strip()}

# Every test client calls from 127.0.0.1: refusing that address after 30 failed
# authentications a minute would refuse the suite itself (the throttle's own test sets its
# limit low, for an address of its own).
SCP_AUTH_FAILURE_LIMIT = 100_000

SCP_WEBHOOK_ALLOW_LOOPBACK = True  # the tests' webhook receivers listen on 127.0.0.1

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
