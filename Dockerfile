# syntax=docker/dockerfile:1
# One image for the whole system: the five services, the outbox relay and sagactl. The compose
# file (docker-compose.yml) picks each container's command.

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
