"""Database: PostgreSQL from DATABASE_URL, SQLite as the embedded default.

On PostgreSQL three roles share the work (README, "Database roles"): the owner migrates (run
`migrate` with its URL as DATABASE_URL); the portal and the workers connect as the application
role, DATABASE_URL, which has data rights only and cannot change or remove audit rows; the
retention purge connects as the purge role (DATABASE_PURGE_URL, alias `purge`), the only one
that may delete sealed audit segments. Without DATABASE_PURGE_URL the purge uses the default
connection (the embedded SQLite default, or a single-role installation)."""
import dj_database_url

from .base import BASE_DIR
from .envtools import env


def _database(url):
    database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    if database["ENGINE"] == "django.db.backends.postgresql":
        # Short OLTP queries: JIT compilation never pays for itself here, and when statistics are
        # stale (a table just filled in bulk) it added ~230 ms to a 100-row page (issue #12).
        database.setdefault("OPTIONS", {})["options"] = "-c jit=off"
    return database


DATABASES = {"default": _database(env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}
if env("DATABASE_PURGE_URL", ""):
    DATABASES["purge"] = _database(env("DATABASE_PURGE_URL"))

# The roles the owner's `migrate` grants rights to (audit/privileges.py); a role that does not
# exist in the cluster is left out, with a warning.
SCP_DB_APP_ROLE = env("SCP_DB_APP_ROLE", "scp")
SCP_DB_PURGE_ROLE = env("SCP_DB_PURGE_ROLE", "scp_purge")
