#!/usr/bin/env bash
# Builds the device agent's image from agent.Dockerfile. The build context is streamed to the engine as a tar of
# exactly what the image needs (package.json, package-lock.json, oclif.manifest.json, bin/, dist/), so neither
# this checkout's node_modules nor anything else in it is sent, and no .dockerignore is needed.
#
#   usage: scripts/build-agent-image.sh [--tag IMAGE] [--base IMAGE] [--prebuilt-node-modules] [-- DOCKER_BUILD_ARGS…]
#     --tag IMAGE                the image to make (default flotilla-agent:latest)
#     --base IMAGE               the Node 20 image to build on (default the Dockerfile's, node:20-bookworm-slim)
#     --prebuilt-node-modules    take the production dependencies from this checkout's node_modules instead of
#                                running npm ci in the image: for a base with no npm, compiler or network, such as
#                                the one scripts/make-node-base-image.sh makes; the modules must have been
#                                installed for the base's Node major and libc (the build checks they load)
#     DOCKER_BUILD_ARGS          passed to docker build, e.g. --network host where the engine has no bridge
# Run "npm run build" first: the image holds dist/ as it is. Prints the image name when done.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tag=flotilla-agent:latest
base=''
prebuilt=false
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
    --base) base=${2:?--base needs an image name}; shift 2 ;;
    --prebuilt-node-modules) prebuilt=true; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument \"$1\" — see scripts/build-agent-image.sh --help" >&2; exit 2 ;;
  esac
done

cd "$root"
for needed in dist/flotilla.js oclif.manifest.json package-lock.json; do
  [ -f "$needed" ] || { echo "error: $needed is missing — run npm run build (and npm ci) first" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp agent.Dockerfile "$work/Dockerfile"
build_args=()
[ -n "$base" ] && build_args+=(--build-arg "BASE=$base")

if [ "$prebuilt" = true ]; then
  # The installed packages npm counts as production dependencies, each once (a package nested in another
  # listed one travels inside it).
  if ! listing=$(npm ls --omit=dev --all --parseable 2>"$work/npm-ls.err"); then
    echo "error: npm ls found problems in node_modules — run npm ci first:" >&2
    cat "$work/npm-ls.err" >&2
    exit 1
  fi
  packages=$(printf '%s\n' "$listing" | sed -n "s|^$root/||p" | grep '^node_modules/' | grep -v '^node_modules/.*/node_modules/' || true)
  [ -n "$packages" ] || { echo "error: npm ls listed no production dependencies" >&2; exit 1; }
  printf '%s\n' "$packages" | tar --numeric-owner --owner=0 --group=0 -cf "$work/node-modules.tar" -T -
fi

# One tar stream: the project's files from the checkout, the Dockerfile and node-modules.tar from $work.
context=(package.json package-lock.json oclif.manifest.json bin dist)
extra=(Dockerfile)
[ "$prebuilt" = true ] && extra+=(node-modules.tar)
tar --numeric-owner --owner=0 --group=0 -c -C "$root" "${context[@]}" -C "$work" "${extra[@]}" |
  docker build --force-rm --tag "$tag" "${build_args[@]}" "$@" - >&2
echo "$tag"
