#!/usr/bin/env bash
# Redis from Debian's package, run by us on 127.0.0.1:$REDIS_PORT (not as a system service).
source "$(dirname "$0")/lib.sh"

dir="$SERVICES_DIR/redis"
pidfile="$dir/redis.pid"
if [ "${1:-start}" = stop ]; then
  if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then log "Redis stopped"; fi
  rm -f "$pidfile"
  exit 0
fi

apt_install redis-server
mkdir -p "$dir"
if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  exit 0
fi
log "starting Redis on port $REDIS_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$dir" \
  --pidfile "$pidfile" --logfile "$dir/redis.log" --save "" --appendonly yes
wait_for 30 "Redis" bash -c "redis-cli -p $REDIS_PORT ping | grep -q PONG" || die "Redis did not come up (see $dir/redis.log)"
