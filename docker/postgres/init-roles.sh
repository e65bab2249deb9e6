#!/bin/sh
# First start of the deployment's PostgreSQL (docker-entrypoint-initdb.d): one role per duty
# (README, "Database roles") and Keycloak in a database of its own.
#   scp_owner  owns the portal's database and runs migrations (the `migrate` service)
#   scp        the application role of the portal and the workers: data rights only, granted
#              by the owner's migrate (audit/privileges.py)
#   scp_purge  the retention purge, the only role that may delete sealed audit segments
#   keycloak   Keycloak's own database; no right on the portal's
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$SCP_DB_OWNER_PASSWORD" -v app_pw="$SCP_DB_PASSWORD" \
  -v purge_pw="$SCP_DB_PURGE_PASSWORD" -v keycloak_pw="$SCP_KEYCLOAK_DB_PASSWORD" <<'SQL'
CREATE ROLE scp_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE scp LOGIN PASSWORD :'app_pw';
CREATE ROLE scp_purge LOGIN PASSWORD :'purge_pw';
CREATE ROLE keycloak LOGIN PASSWORD :'keycloak_pw';
CREATE DATABASE scp OWNER scp_owner;
CREATE DATABASE keycloak OWNER keycloak;
REVOKE ALL ON DATABASE scp FROM PUBLIC;
GRANT CONNECT ON DATABASE scp TO scp, scp_purge;
REVOKE ALL ON DATABASE keycloak FROM PUBLIC;
SQL
