#!/usr/bin/env bash
# The whole test suite on the real services: installs and starts what is missing first.
# Extra arguments go to pytest (e.g. `make test ARGS="-k consent"`).
source "$(dirname "$0")/lib.sh"

bash "$ROOT_DIR/scripts/venv.sh"
bash "$ROOT_DIR/scripts/services.sh"
# Browser tests drive Debian's Chromium (Playwright's own browser download is not used); the
# tiny benchmark uses wrk and nginx; the deployment test runs `docker compose config`; the
# partner pages' example requests are run as shown, with curl and jq.
apt_install chromium nginx wrk curl jq
bash "$ROOT_DIR/scripts/compose.sh"
mkdir -p "$ROOT_DIR/artifacts/screenshots"

# The suite creates and migrates its database as the owner, then runs as the application role
# and purges as the purge role (tests/conftest.py), as the portal and workers do in production.
export DATABASE_URL="$(pg_url "$PG_USER" "$PG_PASSWORD" "$PG_DB")"
export DATABASE_OWNER_URL="$(pg_url "$PG_OWNER" "$PG_OWNER_PASSWORD" "$PG_DB")"
export DATABASE_PURGE_URL="$(pg_url "$PG_PURGE_USER" "$PG_PURGE_PASSWORD" "$PG_DB")"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export KEYCLOAK_URL="http://127.0.0.1:$KEYCLOAK_HTTP_PORT"
export DJANGO_SETTINGS_MODULE=scp_portal.settings.test

cd "$ROOT_DIR"
"$VENV_DIR/bin/python" manage.py check
DATABASE_URL="$DATABASE_OWNER_URL" "$VENV_DIR/bin/python" manage.py makemigrations --check --dry-run >/dev/null \
  || die "models and migrations disagree: run manage.py makemigrations"
# The apps import one way (.importlinter): core data, audit, registry, lifecycle, exchange, portal.
"$VENV_DIR/bin/lint-imports" --no-cache || die "an import breaks the layers of .importlinter"
exec "$VENV_DIR/bin/pytest" "$@"
