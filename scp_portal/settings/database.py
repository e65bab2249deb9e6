"""Database: PostgreSQL from DATABASE_URL, SQLite as the embedded default."""
import dj_database_url

from .base import BASE_DIR
from .envtools import env

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
        conn_health_checks=True,
    )
}
