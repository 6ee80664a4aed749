# syntax=docker/dockerfile:1
# api-service: build from the repository root with
#   docker build -f examples/deploy/docker/api-service.Dockerfile -t api-service:1.3.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api-service \
    && cp target/release/api-service /api-service

# Small runtime: glibc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /api-service /usr/local/bin/api-service
WORKDIR /home/nonroot
USER 65532:65532
ENV HOST=0.0.0.0 PORT=8000 LOG_FORMAT=json
ENV SQLITE_PATH=/home/nonroot/api-service.db
EXPOSE 8000
# No curl in the image: the binary asks itself "started and live?" and exits 0 or 1. Never
# readiness: Swarm restarts unhealthy containers, and a database outage must not restart them
# all (`healthcheck --ready` is for what routes on container health).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/api-service", "healthcheck"]
# The drain starts on SIGTERM; give the container drain + shutdown timeout before SIGKILL
# (docker stop -t / stop_grace_period / terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/api-service"]
