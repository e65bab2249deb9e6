#!/usr/bin/env bash
# Install where missing and start PostgreSQL, Redis and Keycloak, idempotently.
# `services.sh stop` stops what these scripts started.
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
if [ "${1:-start}" = stop ]; then
  bash "$here/keycloak.sh" stop
  bash "$here/redis.sh" stop
  bash "$here/postgres.sh" stop
  exit 0
fi
command -v curl >/dev/null || apt_install curl
bash "$here/postgres.sh"
bash "$here/redis.sh"
bash "$here/keycloak.sh"
