#!/bin/sh
# Says hello every two seconds, with the identity the agent gives every service and a variable from the fleet.
count=0
while true; do
  count=$((count + 1))
  echo "hello from ${BALENA_DEVICE_UUID:-nowhere} (${BALENA_SERVICE_NAME:-?}), greeting=${GREETING:-unset}, line ${count}"
  sleep 2
done
