#!/usr/bin/env bash
# Makes sure a Docker engine answers. When none does and dockerd is installed, starts it in the background the
# only way this kind of machine allows (no bridge, no iptables: containers use host networking) and waits until
# it answers. Safe to run any number of times, also at once from parallel test processes.
set -euo pipefail

log=${FLOTILLA_DOCKERD_LOG:-/tmp/flotilla-dockerd.log}
pidfile=${FLOTILLA_DOCKERD_PIDFILE:-/tmp/flotilla-dockerd.pid}
deadline_seconds=${FLOTILLA_DOCKERD_TIMEOUT:-60}

# Bounded, so that a client hanging on a busy engine cannot hold the wait past its deadline.
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1; then
  echo "error: the docker command is missing — install it with: apt-get install docker.io" >&2
  exit 1
fi
engine_answers && exit 0
if ! command -v dockerd >/dev/null 2>&1; then
  echo "error: no Docker engine answers and dockerd is not installed — install it with: apt-get install docker.io (or start your own engine and set DOCKER_HOST)" >&2
  exit 1
fi

# One starter at a time; whoever waited on the lock finds the engine already answering.
exec 9>"$pidfile.lock"
flock 9
engine_answers && exit 0

if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  daemon_pid=$(cat "$pidfile")
  echo "dockerd (pid $daemon_pid) is running but not answering yet; waiting" >&2
else
  # A pidfile left by a killed dockerd names a dead process: it must not be mistaken for the new one dying.
  rm -f "$pidfile"
  echo "starting dockerd, logging to $log" >&2
  setsid dockerd --bridge=none --iptables=false --ip-masq=false --pidfile "$pidfile" >>"$log" 2>&1 </dev/null 9>&- &
  daemon_pid=$!
fi

while ((SECONDS < deadline_seconds)); do
  engine_answers && exit 0
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
echo "error: dockerd did not answer within ${deadline_seconds}s — the end of $log says:" >&2
tail -n 20 "$log" >&2 || true
exit 1
