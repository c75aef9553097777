# The flotilla device agent in a container of its own. It drives the host's Docker engine through the mounted
# socket, so the services it starts are the host's containers: they keep running when this container stops, and
# this one keeps running when they crash.
#
# Build (after npm run build):  scripts/build-agent-image.sh --tag flotilla-agent
# Run:
#   docker run -d --name flotilla-agent --restart always --network host \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /etc/flotilla:/config \
#     -v /var/lib/flotilla:/var/lib/flotilla \
#     flotilla-agent
# /etc/flotilla holds config.json from "flotilla config generate"; mount the folder, not the file: the agent
# rewrites config.json by renaming a new file over it when it registers. Mount the data dir at the same path as on
# the host, or tell the agent where the host has it (agent start … --host-data-dir /srv/flotilla): the agent
# bind-mounts <data dir>/update-locks/<app> into its services, and the engine resolves that path on the host.
# A host session ("flotilla ssh <uuid>" without a service) and the reboot and shutdown commands run in a sibling
# container from this image, chrooted into the host's root with the host's namespaces, so the image keeps a chroot
# binary (coreutils, or busybox).
# Arguments after the image name replace the default "agent start …" (any flotilla command works).

ARG BASE=node:20-bookworm-slim

# Production dependencies. The native modules come prebuilt for each platform (libsql, @lydell/node-pty, xxhash) or
# are optional: ssh2's install script tries to compile its crypto binding and, with no compiler here, ssh2 uses
# Node's crypto instead (cpu-features, its optional helper, is dropped the same way).
# scripts/build-agent-image.sh --prebuilt-node-modules puts node-modules.tar in the context instead (production
# dependencies already installed on a host with the same Node major and libc), for bases with no npm or network,
# such as the one the tests build. Either way, what only building needed is dropped, and loading the
# native modules proves they fit this base's Node and libc.
FROM ${BASE} AS deps
LABEL io.flotilla.agent-image-stage=deps
WORKDIR /app
COPY package.json package-lock.json node-modules.tar* ./
RUN set -e; \
    if [ -f node-modules.tar ]; then \
      tar -xf node-modules.tar; \
      rm node-modules.tar; \
    else \
      npm ci --omit=dev --no-audit --no-fund; \
    fi; \
    rm -rf node_modules/.bin node_modules/.package-lock.json; \
    find node_modules -type f \( -name '*.o' -o -name '*.a' -o -name '*.ts.map' -o -name '*.js.map' \) -exec rm -f {} +; \
    node -e 'require("libsql"); require("@lydell/node-pty"); require("ssh2")'

FROM ${BASE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json oclif.manifest.json ./
COPY bin ./bin
COPY dist ./dist
VOLUME ["/var/lib/flotilla"]
ENTRYPOINT ["node", "/app/bin/run.js"]
CMD ["agent", "start", "--config", "/config/config.json", "--data-dir", "/var/lib/flotilla"]
