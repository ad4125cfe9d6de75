# syntax=docker/dockerfile:1
# intercom-sspm container image: build with BuildKit (the default in Docker 23+):
#   docker build -t intercom-sspm:dev .
# Probes and Kubernetes manifests: deploy/k8s/README.md.

# ---- build stage -----------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx's query! macros must not need a live database at build time: they read the
# committed .sqlx/ data instead.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
# Cache mounts keep the registry and compiled dependencies between builds, so a source
# change recompiles only this crate (no cargo-chef needed). target/ is a cache mount
# and vanishes after this step, hence the copy out in the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p intercom-sspm --bin intercom-sspm \
    && install -m 0755 target/release/intercom-sspm /usr/local/bin/intercom-sspm

# ---- runtime stage ---------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates and tzdata, no shell or package
# manager. Its :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/intercom-sspm /usr/local/bin/intercom-sspm
# The layered config reads config/default.toml relative to the working directory.
WORKDIR /app
COPY --from=builder /src/config/default.toml /app/config/default.toml
# Numeric (distroless' "nonroot"), so Kubernetes' runAsNonRoot can verify it without
# reading /etc/passwd.
USER 65532:65532
# /livez, /readyz, /metrics. No HEALTHCHECK: the image has no shell or curl to run
# one; orchestrators probe http://<pod>:9464/livez and /readyz directly.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/intercom-sspm"]
CMD ["run"]
