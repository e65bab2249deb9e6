"""Test settings: the real services only (PostgreSQL, Redis, Keycloak), never SQLite."""
from django.core.exceptions import ImproperlyConfigured

from . import *  # noqa: F401,F403
from .database import DATABASES

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "The test suite runs on PostgreSQL: set DATABASE_URL (make test does it for you)."
    )

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
