#!/usr/bin/env bash
# PostgreSQL from Debian's package: start the cluster on 127.0.0.1:$PG_PORT and make sure
# the roles (owner, application, purge) and the database exist.
source "$(dirname "$0")/lib.sh"

cmd="${1:-start}"
if [ "$cmd" = stop ]; then
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h | while read -r ver name port status _; do
      [ "$port" = "$PG_PORT" ] && [ "$status" = online ] && pg_ctlcluster "$ver" "$name" stop && log "PostgreSQL $ver/$name stopped"
    done
  fi
  exit 0
fi

apt_install postgresql
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v p="$PG_PORT" '$3 == p {found=1} END {exit !found}'; then
  log "creating PostgreSQL $ver cluster 'scp' on port $PG_PORT"
  pg_createcluster "$ver" scp --port "$PG_PORT" >/dev/null
fi
read -r cver cname _ < <(pg_lsclusters -h | awk -v p="$PG_PORT" '$3 == p')
if ! pg_lsclusters -h | awk -v p="$PG_PORT" '$3 == p && $4 == "online" {found=1} END {exit !found}'; then
  log "starting PostgreSQL $cver/$cname"
  pg_ctlcluster "$cver" "$cname" start
fi
wait_for 60 "PostgreSQL" pg_isready -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL did not come up on port $PG_PORT"

psql_admin() { su postgres -c "psql -p $PG_PORT -v ON_ERROR_STOP=1 -qAt $*"; }
ensure_role() {  # name password attributes
  if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname='$1'\"")" != 1 ]; then
    log "creating role $1"
    psql_admin "-c \"CREATE ROLE $1 LOGIN $3 PASSWORD '$2'\""
  else
    psql_admin "-c \"ALTER ROLE $1 LOGIN $3 PASSWORD '$2'\""
  fi
}
# The owner creates databases (the test database too); the application and purge roles
# create nothing.
ensure_role "$PG_OWNER" "$PG_OWNER_PASSWORD" "CREATEDB"
ensure_role "$PG_USER" "$PG_PASSWORD" "NOCREATEDB"
ensure_role "$PG_PURGE_USER" "$PG_PURGE_PASSWORD" "NOCREATEDB"
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname='$PG_DB'\"")" != 1 ]; then
  log "creating database $PG_DB"
  psql_admin "-c \"CREATE DATABASE $PG_DB OWNER $PG_OWNER\""
fi
# A database made before the roles were split belongs to the application role: hand it and
# everything in it to the owner (the next migrate grants the application role its data rights).
if [ "$(psql_admin "-c \"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname='$PG_DB'\"")" = "$PG_USER" ]; then
  log "handing database $PG_DB from $PG_USER to $PG_OWNER"
  psql_admin "-d $PG_DB -c \"REASSIGN OWNED BY $PG_USER TO $PG_OWNER\""
fi
