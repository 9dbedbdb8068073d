# syntax=docker/dockerfile:1
# token-keeper as a container image: one static binary on distroless, as a non-root user.
#
#   docker build -t token-keeper:0.1.0 .
#   docker run --rm -v "$PWD/config.toml:/etc/token-keeper/config.toml:ro" token-keeper:0.1.0
#
# The ENTRYPOINT runs the daemon. For an init container, override the whole command
# (Kubernetes `command:`), e.g. ["token-keeper", "once", "--timeout", "60s"]; see
# deploy/kubernetes/spark-sidecar.yaml.

# Build stage: the full toolchain, thrown away afterwards. Pin a digest in production.
FROM rust:1-slim AS build
# musl, so the binary is static and needs no libc in the runtime image. ring (rustls's
# crypto) compiles C and assembly, and musl-tools provides the musl-gcc that builds it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io index, the downloaded crates and the build between builds;
# the binary is copied out of the cached target/ within the same step. --locked builds
# exactly the versions in Cargo.lock. -p token-keeper builds the daemon with its own features
# only; cargo still reads the workspace's other member, crates/knox-sim (the simulator), but
# does not compile it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p token-keeper --bin token-keeper \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/token-keeper /out/token-keeper

# Runtime stage: distroless "static" has no shell and no package manager, only what a static
# binary needs: CA certificates (/etc/ssl/certs, the system trust store the daemon verifies
# Knox's certificate against, plus any ca_file), /etc/passwd with the nonroot user, tzdata.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/token-keeper /usr/local/bin/token-keeper
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
# 65532 is distroless's "nonroot". Pods may run it as any other UID (runAsUser).
USER 65532:65532
# Where every verb looks for its config (-c overrides). Mount a ConfigMap's directory here,
# not a subPath, so that edits reach the file and the daemon reloads them.
ENV TOKEN_KEEPER_CONFIG=/etc/token-keeper/config.toml
# Exec form: token-keeper is PID 1 and receives SIGTERM itself (graceful stop, exit 0).
ENTRYPOINT ["token-keeper", "run"]
