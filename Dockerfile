# syntax=docker/dockerfile:1
#
# keyturn's container image. Two targets:
#
#   docker build -t keyturn .
#     the default: no PAM scripts (disable_scripts), a non-root user (65532), a distroless base
#     with no shell; the native okta, opa and rest connectors work.
#   docker build --target scripts -t keyturn:scripts .
#     PAM scripts in the script sandbox: the server runs as root to make it (scripts run as
#     nobody), on Debian with the tools Keeper's scripts use (bash, jq, curl, python3 with
#     requests) and util-linux's setpriv and mount. It needs CAP_SYS_ADMIN for the sandbox's
#     namespaces and mounts, and no AppArmor profile that denies mount:
#     docker run --cap-add SYS_ADMIN --security-opt apparmor=unconfined ...
#
# First run (both): make the vault in the volume, then serve it (see deploy/README.md):
#   docker run --rm -v keyturn-data:/var/lib/keyturn keyturn init --data /var/lib/keyturn --team acme
#   docker run -d -p 8200:8200 -v keyturn-data:/var/lib/keyturn -v "$PWD/tls:/etc/keyturn/tls:ro" \
#     -e KEYTURN_TLS_CERT_FILE=/etc/keyturn/tls/cert.pem -e KEYTURN_TLS_KEY_FILE=/etc/keyturn/tls/key.pem keyturn
#
# cmd/keyturn TestDockerfile checks the properties this file promises; images cannot be built
# on keyturn's development machines, and hadolint cannot be fetched there.

ARG GO_VERSION=1.27.3

FROM golang:${GO_VERSION}-trixie AS build
WORKDIR /src
# A static binary (modernc SQLite is pure Go), with the time zone database inside for
# schedules' time zones, built by exactly the toolchain above.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG COMMIT=""
ARG BUILD_DATE=""
RUN go build -tags timetzdata -ldflags "-s -w -X main.commit=${COMMIT} -X main.buildDate=${BUILD_DATE}" \
      -o /out/usr/local/bin/keyturn ./cmd/keyturn \
 && mkdir -p /out/var/lib/keyturn \
 && chmod 0700 /out/var/lib/keyturn

FROM debian:trixie-slim AS scripts
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates curl jq mount python3 python3-requests tzdata util-linux \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/keyturn /usr/local/bin/keyturn
# The data directory stays root's, mode 0700: closed to the scripts' user.
COPY --from=build /out/var/lib/ /var/lib/
ENV KEYTURN_DATA=/var/lib/keyturn KEYTURN_LISTEN=0.0.0.0:8200 KEYTURN_SCRIPT_USER=nobody
# Root, to sandbox scripts; each script runs as nobody with no capabilities.
USER root
VOLUME ["/var/lib/keyturn"]
EXPOSE 8200
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["/usr/local/bin/keyturn", "health"]
ENTRYPOINT ["/usr/local/bin/keyturn"]
CMD ["server"]

FROM gcr.io/distroless/static-debian13:nonroot AS runtime
COPY --from=build /out/usr/local/bin/keyturn /usr/local/bin/keyturn
COPY --from=build --chown=65532:65532 /out/var/lib/ /var/lib/
ENV KEYTURN_DATA=/var/lib/keyturn KEYTURN_LISTEN=0.0.0.0:8200 KEYTURN_DISABLE_SCRIPTS=true
USER 65532:65532
VOLUME ["/var/lib/keyturn"]
EXPOSE 8200
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["/usr/local/bin/keyturn", "health"]
ENTRYPOINT ["/usr/local/bin/keyturn"]
CMD ["server"]
