# scopegate image: the PDP and the shims (choose with the command). The opa CLI is built
# from source with `go install` (no release binary is downloaded) and only compiles Rego.
FROM golang:1.26-bookworm AS opa
RUN GOBIN=/out go install github.com/open-policy-agent/opa@v1.22.3

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=opa /out/opa /usr/local/bin/opa
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# The decision spool stays on the /data volume: a container's /dev/shm is gone when the
# container restarts, and with it any segment not yet committed (docs/audit.md).
ENV NODE_ENV=production SCOPEGATE_HOST=0.0.0.0 SCOPEGATE_DATA_DIR=/data SCOPEGATE_OPA_BIN=/usr/local/bin/opa SCOPEGATE_SPOOL_MEMORY_DIR=off
VOLUME /data
EXPOSE 8181
CMD ["npx", "tsx", "pdp-server/src/server.ts"]
