# Shared settings of the project's scripts: sourced, never run.
# Every port and path can be overridden from the environment (see README, "Services").
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES_DIR="${SCP_SERVICES_DIR:-$ROOT_DIR/.services}"
VENV_DIR="${SCP_VENV_DIR:-$ROOT_DIR/.venv}"
PYTHON_BIN="${SCP_PYTHON:-python3}"

PG_HOST=127.0.0.1
PG_PORT="${SCP_PG_PORT:-5432}"
PG_DB="${SCP_PG_DB:-scp}"
PG_USER="${SCP_PG_USER:-scp}"
PG_PASSWORD="${SCP_PG_PASSWORD:-scp}"
# Least privilege (README, "Database roles"): the owner runs migrations and owns the schema; the
# application role above ($PG_USER) has data rights only; the purge role alone may delete
# sealed audit segments.
PG_OWNER="${SCP_PG_OWNER:-scp_owner}"
PG_OWNER_PASSWORD="${SCP_PG_OWNER_PASSWORD:-scp_owner}"
PG_PURGE_USER="${SCP_PG_PURGE_USER:-scp_purge}"
PG_PURGE_PASSWORD="${SCP_PG_PURGE_PASSWORD:-scp_purge}"
pg_url() { printf 'postgres://%s:%s@%s:%s/%s' "$1" "$2" "$PG_HOST" "$PG_PORT" "$3"; }

REDIS_PORT="${SCP_REDIS_PORT:-6379}"

KEYCLOAK_VERSION="${SCP_KEYCLOAK_VERSION:-26.5.6}"
KEYCLOAK_HTTP_PORT="${SCP_KEYCLOAK_PORT:-8180}"
KEYCLOAK_MGMT_PORT="${SCP_KEYCLOAK_MGMT_PORT:-9180}"
KEYCLOAK_HOME="$SERVICES_DIR/keycloak-$KEYCLOAK_VERSION"
KEYCLOAK_ADMIN_USER="${SCP_KEYCLOAK_ADMIN:-admin}"
KEYCLOAK_ADMIN_PASSWORD="${SCP_KEYCLOAK_ADMIN_PASSWORD:-admin}"

mkdir -p "$SERVICES_DIR"

log() { printf '[scp] %s\n' "$*" >&2; }
die() { printf '[scp] ERROR: %s\n' "$*" >&2; exit 1; }

apt_updated=""
apt_install() {
  # Install Debian packages that are missing; `apt-get update` runs at most once per script.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 1
  done
  log "$what is up"
}
