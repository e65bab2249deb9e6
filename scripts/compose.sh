#!/usr/bin/env bash
# Docker Compose v2, so that `docker compose config` can validate docker/compose.yaml on
# machines without Docker's own packages: built once from its Go module (the Go module proxy
# is reachable where Docker's download site is not) and installed as the docker CLI plugin and
# as $SERVICES_DIR/bin/docker-compose. Idempotent. No Docker engine is needed to validate.
source "$(dirname "$0")/lib.sh"

COMPOSE_VERSION="${SCP_COMPOSE_VERSION:-v2.40.3}"
bin="$SERVICES_DIR/bin/docker-compose"
plugin="$HOME/.docker/cli-plugins/docker-compose"

if [ ! -x "$bin" ] || ! "$bin" version 2>/dev/null | grep -q "${COMPOSE_VERSION#v}"; then
  command -v go >/dev/null || die "Go is needed to build Docker Compose $COMPOSE_VERSION"
  log "building Docker Compose $COMPOSE_VERSION from its Go module (once; about 2 minutes)"
  src_dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
    | "$PYTHON_BIN" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
  cp -r "$src_dir" "$work/src" && chmod -R u+w "$work/src"
  mkdir -p "$(dirname "$bin")"
  (cd "$work/src" && go build -trimpath \
    -ldflags "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" -o "$bin" ./cmd)
fi
mkdir -p "$(dirname "$plugin")"
cp "$bin" "$plugin"
