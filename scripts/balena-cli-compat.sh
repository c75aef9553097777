#!/usr/bin/env bash
# Runs the official balena-cli against a flotilla server, by hand (not CI: installing balena-cli is heavy).
#   sudo scripts/balena-cli-compat.sh /path/to/balena
# balena-cli only speaks https to api.<domain>, so this script (as root) makes a self-signed certificate for
# api|builder|ssh|tunnel.flotilla.test, points those names at 127.0.0.1 in /etc/hosts (restored on exit, also when
# interrupted, terminated or hung up), and serves the API on 127.0.0.1:443.
# Install balena-cli outside the project, e.g. with Node 20:
#   mkdir /tmp/balena-cli && cd /tmp/balena-cli && npm init -y && npm pkg set overrides.unbzip2-stream=1.4.3 \
#     && npm install --ignore-scripts balena-cli@22 # then: /tmp/balena-cli/node_modules/.bin/balena
# The fleet is generic-amd64, this machine's kind, so that push builds for the CPU the local agent runs on.
# (22 is the last major for Node 20; etcher-sdk's git dependency unbzip2-stream is swapped for the registry's.)
# The device part (ssh, tunnel, logs) starts a flotilla agent with the host network; `push` needs the local Docker
# engine and the image flotilla-test/busybox:latest (scripts/make-base-image.sh). Every step prints PASS or FAIL.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <path to the balena binary>" >&2; exit 2; }
balena_bin=$(realpath "$1")
[ -x "$balena_bin" ] || { echo "$1 is not an executable" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root: the script edits /etc/hosts and listens on port 443" >&2; exit 2; }
cd "$(dirname "$0")/.."
[ -f dist/flotilla.js ] && [ -f oclif.manifest.json ] || npm run build >/dev/null

domain=flotilla.test
ssh_port=${FLOTILLA_SSH_PORT:-2222}
device_port=${DEVICE_PORT:-18080}
work=$(mktemp -d)
hosts_backup="$work/hosts.backup"
hosts_mark='# added by flotilla balena-cli-compat.sh'
pids=()
uuid=$(openssl rand -hex 16)
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null && wait "${pids[i]}" 2>/dev/null; done
  # The agent leaves its containers when it stops: remove this run's device's, and the image push built.
  if command -v docker >/dev/null; then
    docker ps -aq --filter "label=io.flotilla.device-uuid=$uuid" | xargs -r docker rm -f >/dev/null 2>&1
    grep -ao 'Successfully tagged [^ ]*' "$work/push.out" 2>/dev/null | cut -d' ' -f3 | xargs -r docker rmi >/dev/null 2>&1
  fi
  # Without our line, also one a run killed with SIGKILL (which nothing can catch) left behind.
  [ -f "$hosts_backup" ] && grep -vF "$hosts_mark" "$hosts_backup" >/etc/hosts
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj "/CN=api.$domain" \
  -addext "subjectAltName=DNS:api.$domain,DNS:builder.$domain,DNS:ssh.$domain,DNS:tunnel.$domain" 2>/dev/null
cp /etc/hosts "$hosts_backup"
echo "127.0.0.1 api.$domain builder.$domain ssh.$domain tunnel.$domain $hosts_mark" >>/etc/hosts

export FLOTILLA_ADMIN_EMAIL=admin@$domain FLOTILLA_ADMIN_PASSWORD=compat-password FLOTILLA_LOG_LEVEL=${FLOTILLA_LOG_LEVEL:-debug}
node bin/run.js server start --host 127.0.0.1 --port 443 --public-url "https://api.$domain" --ssh-port "$ssh_port" --cert "$work/cert.pem" --key "$work/key.pem" \
  --data-dir "$work/server" --images-dir "$work/images" >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
mkdir -p "$work/images/raspberrypi4-64/6.0.13" && head -c 1048576 /dev/zero >"$work/images/raspberrypi4-64/6.0.13/balena.img"
for _ in $(seq 100); do grep -q listening "$work/server.out" && break; sleep 0.2; done
grep listening "$work/server.out" || { cat "$work/server.out" "$work/server.log"; exit 1; }

# balena-cli's settings: the domain, the ssh gateway at ssh.<proxyUrl>, our CA, a scratch home; `ssh` gets our key.
mkdir -p "$work/home" "$work/bin"
ssh-keygen -q -t ed25519 -N '' -C compat@flotilla -f "$work/id_ed25519"
printf '#!/bin/sh\nexec %s -i %s -o IdentitiesOnly=yes -F /dev/null "$@"\n' "$(command -v ssh)" "$work/id_ed25519" >"$work/bin/ssh"
chmod +x "$work/bin/ssh"
export HOME="$work/home" PATH="$work/bin:$PATH" NODE_EXTRA_CA_CERTS="$work/cert.pem" NO_COLOR=1 \
  BALENARC_BALENA_URL=$domain BALENARC_PROXY_URL=$domain BALENARC_NO_ANALYTICS=1 BALENA_CLI_DISABLE_UPDATE_CHECK=1
# (Node warns once about a `balena` it cannot spawn; that line is dropped.) Exported for the `bash -c` checks.
balena() { "$balena_bin" "$@" 2>&1 | grep -v 'ENOENT\|trace-warnings'; return "${PIPESTATUS[0]}"; }
export balena_bin
export -f balena

passed=0
failed=()
check() { # check <description> <command...>: runs it, shows its output, counts it
  local what=$1
  shift
  echo "--- $what: $*"
  if "$@"; then passed=$((passed + 1)); echo "PASS $what"; else failed+=("$what"); echo "FAIL $what"; fi
}

echo "balena-cli $(balena version)"
check 'login --credentials' balena login --credentials --email "$FLOTILLA_ADMIN_EMAIL" --password "$FLOTILLA_ADMIN_PASSWORD"
check 'whoami' balena whoami
key=$(balena api-key generate compat-key never | grep -E '^[A-Za-z0-9]{32}$')
check 'api-key generate' test -n "$key"
check 'login --token' balena login --token "$key"
check 'whoami (API key)' bash -c "balena whoami | grep -q 'USERNAME: admin'"
check 'fleet create' balena fleet create compat --type generic-amd64
check 'fleet list' bash -c "balena fleet list | grep -q admin/compat"
check 'fleet rename' bash -c "balena fleet rename admin/compat compat2 && balena fleet rename admin/compat2 compat"
check 'device register' balena device register compat --uuid "$uuid"
check 'device list' bash -c "balena device list | grep -q admin/compat"
check 'device info' bash -c "balena device $uuid | grep -q 'UUID: *$uuid'"
check 'env set (fleet)' balena env set GREETING hello --fleet compat
check 'env set (fleet, again: upsert)' balena env set GREETING hello2 --fleet compat
check 'env set (device)' balena env set DEVICE_VAR 1 --device "$uuid"
check 'env set (config)' balena env set BALENA_SUPERVISOR_POLL_INTERVAL 600000 --fleet compat
check 'env list' bash -c "balena env list --device $uuid | grep -q hello2"
check 'tag set' bash -c "balena tag set room lab --device $uuid && balena tag set room lab2 --device $uuid && balena tag set owner me --fleet compat"
check 'tag list' bash -c "balena tag list --device $uuid | grep -q lab2"
check 'ssh-key add' balena ssh-key add compat "$work/id_ed25519.pub"
check 'device-type list' bash -c "balena device-type list | grep -q raspberrypi4-64"
check 'os versions' bash -c "balena os versions raspberrypi4-64 | grep -q 6.0.13"
check 'os download' balena os download raspberrypi4-64 --version 6.0.13 -o "$work/os.img"
check 'config generate (fleet)' bash -c "balena config generate --fleet compat --version 6.0.13 --deviceType generic-amd64 --network ethernet --appUpdatePollInterval 10 --output $work/fleet-config.json && grep -q apiKey $work/fleet-config.json"
check 'config generate (device)' bash -c "balena config generate --device $uuid --version 6.0.13 --network ethernet --appUpdatePollInterval 10 --output $work/device-config.json >/dev/null && grep -q deviceApiKey $work/device-config.json"

if docker image inspect flotilla-test/busybox:latest >/dev/null 2>&1; then
  mkdir -p "$work/project"
  printf 'FROM flotilla-test/busybox:latest\nCMD ["sh", "-c", "while true; do echo hello from balena push; sleep 5; done"]\n' >"$work/project/Dockerfile"
  # A compose file, for a service that is not privileged (balena's default for a lone Dockerfile): an engine
  # that cannot run privileged containers, as in a sandbox, still runs it.
  printf 'version: "2.1"\nservices:\n  main:\n    build: .\n' >"$work/project/docker-compose.yml"
  check 'push (builder)' bash -c "balena push compat --source $work/project | tee $work/push.out; grep -q 'Release built' $work/push.out"
  check 'release list' bash -c "balena release list admin/compat | grep -q success"
  commit=$(balena release list admin/compat | awk '/success/ {print $2; exit}')
  check 'fleet track-latest' balena fleet track-latest admin/compat
  echo 'notes of this release' >"$work/notes.txt"
  check 'release-asset upload' balena release-asset upload "$commit" "$work/notes.txt" --key notes
  check 'release-asset list' bash -c "balena release-asset list $commit | grep -q notes"
  echo 'notes, revised' >"$work/notes.txt"
  check 'release-asset upload --overwrite' balena release-asset upload "$commit" "$work/notes.txt" --key notes --overwrite
  check 'release-asset download' bash -c "balena release-asset download $commit --key notes --output $work/notes.out && cmp $work/notes.txt $work/notes.out"
  check 'release-asset delete' bash -c "balena release-asset delete $commit --key notes --yes && ! balena release-asset list $commit | grep -q notes"
else
  echo "SKIP push: no image flotilla-test/busybox:latest (scripts/ensure-docker.sh, then scripts/make-base-image.sh flotilla-test/busybox:latest)"
fi

# A device: the flotilla agent with the device's config, linked to the server; then logs, ssh and tunnel through it.
node bin/run.js agent start --config "$work/device-config.json" --data-dir "$work/agent" --host-network --local-api-port 0 --poll-interval 5 \
  >"$work/agent.out" 2>"$work/agent.log" &
pids+=($!)
for _ in $(seq 60); do grep -q 'device link up' "$work/agent.out" && break; sleep 0.5; done
check 'device online' bash -c "balena device $uuid | grep -q 'IS ONLINE: *true'"
check 'logs' bash -c "balena logs $uuid | grep -q ."
check 'ssh (host, piped command)' bash -c "echo 'echo ssh-says-hi; exit' | balena ssh $uuid --port $ssh_port | grep -q ssh-says-hi"
mkdir -p "$work/www" && echo tunnel-says-hi >"$work/www/index.html"
python3 -m http.server "$device_port" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
pids+=($!)
"$balena_bin" tunnel "$uuid" -p "$device_port:$((device_port + 1))" >"$work/tunnel.out" 2>&1 &
pids+=($!)
for _ in $(seq 40); do grep -q 'Waiting for connections' "$work/tunnel.out" && break; sleep 0.5; done
check 'tunnel' bash -c "curl -sf -m 10 http://127.0.0.1:$((device_port + 1))/index.html | grep -q tunnel-says-hi"
check 'device public-url' bash -c "balena device public-url $uuid --enable && balena device public-url $uuid | grep -q 'https://$uuid.api.$domain'"
check 'fleet restart' balena fleet restart admin/compat
# The service push started: stopped by its name, it stays stopped until started again.
service_state() { docker ps -a --filter "label=io.flotilla.device-uuid=$uuid" --filter 'label=io.balena.service-name=main' --format '{{.State}}' | head -1; }
wait_service() { for _ in $(seq 60); do [ "$(service_state)" = "$1" ] && return 0; sleep 0.5; done; return 1; }
# Waits (60 s at most) for the service to hold a state for 5 s in a row: the restart just before passes through
# "exited" for a moment (the service ignores SIGTERM, so each stop takes the engine's 10 s).
settled_service() {
  local held=0
  for _ in $(seq 120); do
    if [ "$(service_state)" = "$1" ]; then held=$((held + 1)) && [ $held -ge 10 ] && return 0; else held=0; fi
    sleep 0.5
  done
  return 1
}
export -f service_state wait_service settled_service
export uuid
if [ -f "$work/push.out" ]; then
  check 'device stop-service' bash -c "balena device stop-service $uuid main && settled_service exited"
  check 'device start-service' bash -c "balena device start-service $uuid main && wait_service running"
  check 'ssh (service)' bash -c "echo 'echo service-says-hi; exit' | balena ssh $uuid main --port $ssh_port | grep -q service-says-hi"
fi
other=$(openssl rand -hex 16)
check 'device deactivate' bash -c "balena device register compat --uuid $other && balena device deactivate $other --yes && balena device $other | grep -qi 'inactive'"

# balena-sdk's calls of the issue, with the SDK balena-cli ships (logged in through balena-cli's token store).
cat >"$work/sdk-calls.cjs" <<'SDK'
const sdkPath = require.resolve('balena-sdk', {paths: [process.env.BALENA_CLI_DIR]})
const sdk = require(sdkPath).getSdk({apiUrl: `https://api.${process.env.DOMAIN}`, dataDirectory: `${process.env.HOME}/.balena`})
const [call, uuid, fleet] = process.argv.slice(2)
const calls = {
  'device fields': async () => {
    const device = await sdk.models.device.get(uuid, {$select: ['is_connected_to_vpn', 'overall_status']})
    return device.is_connected_to_vpn === true && device.overall_status === 'operational'
  },
  ping: async () => (await sdk.models.device.ping(uuid), true),
  'supervisor state': async () => (await sdk.models.device.getSupervisorState(uuid)).api_port !== undefined,
  'target state v2': async () => Object.keys((await sdk.models.device.getSupervisorTargetState(uuid)).local.apps).length === 1,
  'fleet target state': async () => (await sdk.models.device.getSupervisorTargetStateForApp(fleet)) !== undefined,
  'device history': async () => (await sdk.models.device.history.getAllByDevice(uuid)).length > 0,
  'release images': async () => {
    const [release] = await sdk.models.release.getAllByApplication(fleet, {$select: 'id', $expand: {contains__image: {$expand: 'image'}}, $top: 1})
    return release === undefined || release.contains__image.every((part) => part.image.length === 1)
  },
  'config deviceUrlsBase': async () => typeof (await sdk.models.config.getAll()).deviceUrlsBase === 'string',
  'device type configuration': async () => (await sdk.models.config.getDeviceTypes()).every((type) => type.configuration?.config?.path === '/config.json'),
}
calls[call]().then((ok) => process.exit(ok ? 0 : 1), (error) => { console.error(error.message); process.exit(1) })
SDK
export BALENA_CLI_DIR=$(dirname "$balena_bin") DOMAIN=$domain
for call in 'device fields' ping 'supervisor state' 'target state v2' 'fleet target state' 'device history' 'release images' 'config deviceUrlsBase' 'device type configuration'; do
  check "sdk $call" node "$work/sdk-calls.cjs" "$call" "$uuid" admin/compat
done

echo
echo "server requests: $work/server.log (kept until exit)"
echo "$passed passed, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
