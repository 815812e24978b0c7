# syntax=docker/dockerfile:1
# One image for the whole system: the five services, the outbox relay and sagactl. The compose
# file (docker-compose.yml) picks each container's command. The API gateway is a second image,
# the `gateway` stage (`docker build --target gateway .`).

# --- builder: release binaries; the registry and target directory live in BuildKit cache
# mounts, so a rebuild after a source change recompiles only our crates, not the dependencies.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p order-service -p product-service -p coupon-service -p balance-service \
        -p monitor-service -p outbox-relay -p sagactl \
    && mkdir -p /out \
    && cp target/release/order-service target/release/product-service \
          target/release/coupon-service target/release/balance-service \
          target/release/monitor-service target/release/outbox-relay \
          target/release/sagactl /out/

# --- gateway: nginx, configured at start by `sagactl gateway config` from the GATEWAY_*
# variables (docs/gateway.md). The image's Debian variant, like the builder: sagactl is linked
# against glibc, which Alpine lacks. Not the last stage, so that a plain `docker build .` still
# makes the services' image. nginx's master runs as root, as the image intends (it opens the
# container's stdout for the access log, which a non-root user may not reopen); its workers run
# as the image's `nginx` user.
FROM nginx:1.27-bookworm AS gateway
COPY --from=builder /out/sagactl /usr/local/bin/
ENV GATEWAY_LISTEN=0.0.0.0:8080 \
    GATEWAY_RUNTIME_DIR=/tmp/saga-gateway
EXPOSE 8080
CMD ["sh", "-c", "mkdir -p \"$GATEWAY_RUNTIME_DIR\" && sagactl gateway config --out \"$GATEWAY_RUNTIME_DIR/nginx.conf\" && exec nginx -e stderr -p \"$GATEWAY_RUNTIME_DIR\" -c \"$GATEWAY_RUNTIME_DIR/nginx.conf\""]

# --- runtime: the binaries, CA certificates (TLS to a managed broker) and curl (health checks).
FROM debian:bookworm-slim AS runtime
# The bookworm-slim tag tracks Debian's security updates; pinning package versions would break
# the build at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 saga \
    && useradd --uid 10001 --gid saga --home-dir /home/saga --create-home saga
COPY --from=builder /out/order-service /out/product-service /out/coupon-service \
     /out/balance-service /out/monitor-service /out/outbox-relay /out/sagactl /usr/local/bin/
USER 10001:10001
WORKDIR /home/saga
# Listen on every interface (the services' default, 127.0.0.1, is unreachable from outside a
# container) and log JSON lines.
ENV HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json
EXPOSE 8081 8082 8083 8084 8085 9187
CMD ["sagactl", "--help"]
