#!/usr/bin/env bash
# The embedded default: SQLite and eager Celery tasks unless DATABASE_URL / CELERY_BROKER_URL
# are set; migrates, seeds the demo data into an empty database, starts Keycloak and serves
# the portal on http://127.0.0.1:${SCP_PORT:-8000} (with a Celery worker and beat when a broker is set).
source "$(dirname "$0")/lib.sh"

bash "$ROOT_DIR/scripts/venv.sh"
command -v curl >/dev/null || apt_install curl
bash "$ROOT_DIR/scripts/keycloak.sh"
export KEYCLOAK_URL="http://127.0.0.1:$KEYCLOAK_HTTP_PORT"

cd "$ROOT_DIR"
py="$VENV_DIR/bin/python"
# On PostgreSQL the owner migrates (DATABASE_OWNER_URL) and the portal runs as DATABASE_URL.
if [ -n "${DATABASE_OWNER_URL:-}" ]; then
  DATABASE_URL="$DATABASE_OWNER_URL" "$py" manage.py migrate --no-input
else
  "$py" manage.py migrate --no-input
fi
"$py" manage.py seed_demo --if-empty
"$py" manage.py check

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
if [ -n "${CELERY_BROKER_URL:-}" ]; then
  "$VENV_DIR/bin/celery" -A scp_portal worker -Q celery --loglevel=INFO --concurrency=2 -n "jobs@%h" & pids+=($!)
  # Webhook deliveries: one process, many in flight (threads), on their own queue.
  "$VENV_DIR/bin/celery" -A scp_portal worker -Q webhooks --pool=threads --concurrency="${SCP_WEBHOOK_CONCURRENCY:-16}" \
    --loglevel=INFO -n "webhooks@%h" & pids+=($!)
  "$VENV_DIR/bin/celery" -A scp_portal beat --loglevel=INFO --schedule "$SERVICES_DIR/celerybeat-schedule" & pids+=($!)
fi
log "portal on http://127.0.0.1:${SCP_PORT:-8000}/admin/ (local dev login: root / root)"
"$py" manage.py runserver "127.0.0.1:${SCP_PORT:-8000}"
