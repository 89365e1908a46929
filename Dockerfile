# syntax=docker/dockerfile:1
# Écluse gateway image: multi-stage, production dependencies only, non-root.
# Certificates, keys and configuration are mounted at run time, never baked in: a directory holding
# gateway.yaml and the files it names (paths relative to gateway.yaml), as in the README:
#   docker run --rm --read-only --cap-drop ALL --security-opt no-new-privileges \
#     -v /srv/ecluse:/etc/ecluse:ro -p 8443:8443 ecluse
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# No package manager at run time: the gateway never installs anything, and npm, corepack and yarn
# (with their own dependency trees) would only be more code for a scanner to flag and an intruder to use.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
    /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
# The entrypoint's Node options (below), tried with this image's own node: a V8 flag it no longer
# knows fails the build here, not every container at start ("bad option", exit 9).
RUN ["node", "--no-concurrent-sweeping", "-e", "0"]
# The image's `node` user, by number: Kubernetes can check runAsNonRoot only against a numeric uid.
USER 1000:1000
# Sponsor side and admin (bind the admin listener to loopback unless the pod needs it; see docs/operations.md).
EXPOSE 8443 9090
# The gateway takes its admin port from its configuration file only: ECLUSE_ADMIN_PORT here must say
# the same as `admin.listen.port` when that is not 9090 (and the admin listener must listen on
# loopback or a wildcard address for 127.0.0.1 to reach it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.ECLUSE_ADMIN_PORT||9090)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# V8 sweeps freed memory on the gateway's own thread instead of waking helper threads for it: less
# CPU for the same sealing work, the same memory (docs/operations.md, "Processes and cores"). A V8
# flag, which NODE_OPTIONS refuses; bench/lib/subjects.ts IMAGE_NODE_ARGS measures the gateway with
# the same list, and a test holds the three places together.
ENTRYPOINT ["node", "--no-concurrent-sweeping", "/app/bin/ecluse.js"]
CMD ["serve", "--config", "/etc/ecluse/gateway.yaml"]
