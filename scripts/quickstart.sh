#!/usr/bin/env bash
# The README's quick start as one script: starts the embedded fleet server on loopback with a throw-away data dir,
# logs in, creates a fleet, registers a device, sets a variable and a tag, and lists them as tables and as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/flotilla.js ] && [ -f oclif.manifest.json ] || npm run build >/dev/null

flotilla() { node bin/run.js "$@"; }
work=$(mktemp -d)
export HOME="$work/home" FLOTILLA_ADMIN_EMAIL=admin@example.com FLOTILLA_ADMIN_PASSWORD=quickstart-password
port=${FLOTILLA_PORT:-7171}
node bin/run.js server start --port "$port" --data-dir "$work/server" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q listening "$work/server.log" && break; sleep 0.1; done
grep listening "$work/server.log" || { cat "$work/server.log"; exit 1; }
export FLOTILLA_URL="http://127.0.0.1:$port"

set -x
printf '%s' "$FLOTILLA_ADMIN_PASSWORD" | flotilla login --credentials --email "$FLOTILLA_ADMIN_EMAIL" --password -
flotilla whoami
flotilla fleet create demo --type raspberrypi4-64
uuid=$(flotilla device register demo --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).uuid))')
flotilla env set GREETING hello --fleet demo
flotilla env set GREETING "hello from the device" --device "$uuid"
flotilla tag set location lab --device "$uuid"
flotilla fleets
flotilla devices
flotilla env list --device "$uuid"
flotilla tag list --device "$uuid"
flotilla devices --json
