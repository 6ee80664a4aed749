# syntax=docker/dockerfile:1
# worker-service: build from the repository root with
#   docker build -f examples/deploy/docker/worker-service.Dockerfile -t worker-service:1.3.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p worker-service \
    && cp target/release/worker-service /worker-service

# Small runtime: glibc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /worker-service /usr/local/bin/worker-service
WORKDIR /home/nonroot
USER 65532:65532
ENV HOST=0.0.0.0 PORT=8002 LOG_FORMAT=json
EXPOSE 8002
# No curl in the image: the binary asks itself "started and live?" and exits 0 or 1. Never
# readiness: Swarm restarts unhealthy containers, and a database outage must not restart them
# all (`healthcheck --ready` is for what routes on container health).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/worker-service", "healthcheck"]
# The drain starts on SIGTERM; give the container drain + shutdown timeout before SIGKILL
# (docker stop -t / stop_grace_period / terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/worker-service"]
