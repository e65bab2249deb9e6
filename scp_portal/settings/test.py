"""Test settings: the real services only (PostgreSQL, Redis, Keycloak), never SQLite."""
from django.core.exceptions import ImproperlyConfigured

from . import *  # noqa: F401,F403
from .database import DATABASES

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "The test suite runs on PostgreSQL: set DATABASE_URL (make test does it for you)."
    )

# Between transactional tests Django empties every table with TRUNCATE; the append-only audit
# triggers let that through only in a maintenance session (see audit/migrations/0003).
# The tests of append-only behaviour switch it off on their own connection.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c scp.audit_maintenance=on"

# Every test client calls from 127.0.0.1: refusing that address after 30 failed
# authentications a minute would refuse the suite itself (the throttle's own test sets its
# limit low, for an address of its own).
SCP_AUTH_FAILURE_LIMIT = 100_000

SCP_WEBHOOK_ALLOW_LOOPBACK = True  # the tests' webhook receivers listen on 127.0.0.1

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
