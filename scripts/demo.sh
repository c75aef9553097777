#!/usr/bin/env bash
# The whole loop on one machine: a local fleet server, a device agent on the local Docker engine, a push of
# examples/hello, and its logs followed live. Ctrl-C stops it and removes what it started.
# FLOTILLA_DEMO_LINES=N stops after N log lines (for tests). Every port is a free one the system picks (another
# server or agent on this machine may hold the usual 7171, 2222 and 48484); FLOTILLA_DEMO_PORT,
# FLOTILLA_DEMO_SSH_PORT and FLOTILLA_AGENT_API_PORT choose them instead.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/flotilla.js ] && [ -f oclif.manifest.json ] || npm run build >/dev/null

bash scripts/ensure-docker.sh
bash scripts/make-base-image.sh >/dev/null

flotilla() { node bin/run.js "$@"; }
work=$(mktemp -d)
export HOME="$work/home" FLOTILLA_ADMIN_EMAIL=demo@example.com FLOTILLA_ADMIN_PASSWORD=demo-password
server=''
agent=''
uuid=''
cleanup() {
  set +e
  [ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  if [ -n "$uuid" ]; then
    docker ps -aq --filter "label=io.flotilla.device-uuid=$uuid" | xargs -r docker rm -f >/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for <seconds> <state> <name> <pid> <log> <command…>: waits for the command to succeed while the process it
# depends on runs. When that process dies, or time runs out, prints the process's log (cleanup deletes it) and fails.
wait_for() {
  local seconds=$1 state=$2 name=$3 pid=$4 log=$5 code=0
  local deadline=$((SECONDS + seconds))
  shift 5
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || code=$?
      echo "demo: the $name exited (code $code) before it was $state; its log:" >&2
      sed 's/^/  /' "$log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: the $name was still not $state after $seconds s; its log:" >&2
      sed 's/^/  /' "$log" >&2
      return 1
    fi
    sleep 0.5
  done
}

node bin/run.js server start --port "${FLOTILLA_DEMO_PORT:-0}" --ssh-port "${FLOTILLA_DEMO_SSH_PORT:-0}" --data-dir "$work/server" >"$work/server.log" 2>&1 &
server=$!
wait_for 30 "listening" "fleet server" "$server" "$work/server.log" grep -q listening "$work/server.log"
export FLOTILLA_URL=$(sed -n 's/^flotilla server listening on \([^,]*\),.*/\1/p' "$work/server.log")
echo "demo: fleet server at $FLOTILLA_URL"
echo "demo: dashboard at $FLOTILLA_URL/ (sign in as $FLOTILLA_ADMIN_EMAIL, password $FLOTILLA_ADMIN_PASSWORD)"

printf '%s' "$FLOTILLA_ADMIN_PASSWORD" | flotilla login --credentials --email "$FLOTILLA_ADMIN_EMAIL" --password - >/dev/null
case "$(uname -m)" in aarch64 | arm64) type=generic-aarch64 ;; *) type=intel-nuc ;; esac
flotilla fleet create hello --type "$type" >/dev/null
flotilla env set GREETING "hi there" --fleet hello >/dev/null
flotilla config generate --fleet hello -o "$work/config.json" >/dev/null
echo "demo: fleet admin/hello ($type) created"

node bin/run.js agent start --config "$work/config.json" --data-dir "$work/agent" --host-network --poll-interval 2 \
  --local-api-port "${FLOTILLA_AGENT_API_PORT:-0}" >"$work/agent.log" 2>&1 &
agent=$!
registered() { node -e 'process.exit(require(process.argv[1]).uuid ? 0 : 1)' "$work/config.json"; }
wait_for 60 "registered" "agent" "$agent" "$work/agent.log" registered
uuid=$(node -e 'console.log(require(process.argv[1]).uuid)' "$work/config.json")
echo "demo: device $uuid registered"

flotilla push hello --source examples/hello

# The device link: a shell in the service through the fleet server, with a throw-away key.
ssh-keygen -q -t ed25519 -N '' -C flotilla-demo -f "$work/demo_key"
flotilla ssh-key add demo "$work/demo_key.pub" >/dev/null
wait_for 60 "running the service" "agent" "$agent" "$work/agent.log" flotilla ssh "$uuid" hello --identity "$work/demo_key" -- true
echo "demo: flotilla ssh $uuid hello -- uname -sm"
flotilla ssh "$uuid" hello --identity "$work/demo_key" -- uname -sm

echo "demo: following the logs of $uuid (Ctrl-C to stop); watch them in the dashboard too: $FLOTILLA_URL/#/device/$uuid"
if [ -n "${FLOTILLA_DEMO_LINES:-}" ]; then
  # The reader stops after N lines; grep and logs then end on a closed pipe, which is this mode's normal end.
  flotilla logs "$uuid" --tail | grep --line-buffered 'hello from' | head -n "$FLOTILLA_DEMO_LINES" || true
else
  flotilla logs "$uuid" --tail
fi
