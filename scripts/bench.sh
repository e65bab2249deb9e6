#!/usr/bin/env bash
# The benchmark (`make bench`): the stack with production settings (DEBUG off, gunicorn,
# PostgreSQL, Redis, Keycloak) on its own database `scp_bench`, then `python -m bench`.
# Extra arguments go to it (e.g. `make bench ARGS=--tiny`). Results: artifacts/bench/.
source "$(dirname "$0")/lib.sh"

bash "$ROOT_DIR/scripts/venv.sh"
bash "$ROOT_DIR/scripts/services.sh"
apt_install wrk nginx

BENCH_DB="${SCP_BENCH_DB:-scp_bench}"
# A fresh database each run: every run measures the same thing (the data a run seeds, under the
# reference data of the code being measured), never what an earlier version of the code left.
fresh_database() {
  log "creating database $BENCH_DB afresh"
  su postgres -c "psql -p $PG_PORT -v ON_ERROR_STOP=1 -q -c \"DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)\" -c \"CREATE DATABASE $BENCH_DB OWNER $PG_OWNER\""
  # Migrated by the owner; measured as the application role, as deployed.
  (cd "$ROOT_DIR" && DATABASE_URL="$DATABASE_OWNER_URL" "$VENV_DIR/bin/python" manage.py migrate --no-input -v 0)
}

export DATABASE_URL="$(pg_url "$PG_USER" "$PG_PASSWORD" "$BENCH_DB")"
export DATABASE_PURGE_URL="$(pg_url "$PG_PURGE_USER" "$PG_PURGE_PASSWORD" "$BENCH_DB")"
export DATABASE_OWNER_URL="$(pg_url "$PG_OWNER" "$PG_OWNER_PASSWORD" "$BENCH_DB")"  # the bare COPY baseline creates its table
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/2"
export KEYCLOAK_URL="http://127.0.0.1:$KEYCLOAK_HTTP_PORT"
export DJANGO_SETTINGS_MODULE=bench.settings
# Production settings: DEBUG off and fresh secrets for this run only.
export DJANGO_DEBUG=false
# The development realm's portal client secret, declared as such (refused otherwise with DEBUG off).
export KEYCLOAK_PORTAL_CLIENT_SECRET=scp-portal-dev-secret SCP_BENCH_DEV_REALM=true
export DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
export DJANGO_SECRET_KEY="$("$VENV_DIR/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')"
export SCP_PSEUDONYM_KEY="$("$VENV_DIR/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
export SCP_AUDIT_SIGNING_KEY="$("$VENV_DIR/bin/python" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"

cd "$ROOT_DIR"
# `--curve` or `--scale SIZES`: only the scale curve. Otherwise the main run, then the scale
# curve on a database of its own (persons of two tenants with mixed consent, grown in steps up to
# 1,000,000, or to N with `--persons N`), since the main run's persons all consent.
main_args=() curve_args=(--curve) curve_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --curve|--scale|--scale=*) curve_only=true; main_args+=("$1") ;;
    --audit-volume|--audit-volume=*) curve_only=true; main_args+=("$1") ;;  # only that run (bench/audit_volume.py)
    --persons) curve_args+=("$1" "$2"); shift ;;
    --persons=*) curve_args+=("$1") ;;
    --tiny) main_args+=("$1"); curve_args+=("$1") ;;
    --out) main_args+=("$1" "$2"); curve_args+=("$1" "$2"); shift ;;
    *) main_args+=("$1") ;;
  esac
  shift
done
fresh_database
if $curve_only; then
  exec "$VENV_DIR/bin/python" -m bench "${main_args[@]}" "${curve_args[@]:1}"
fi
"$VENV_DIR/bin/python" -m bench "${main_args[@]}"
fresh_database
exec "$VENV_DIR/bin/python" -m bench "${curve_args[@]}"
