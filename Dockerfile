# syntax=docker/dockerfile:1
# The Stowage controller image: a release build of the `stowage` binary on distroless, non-root.
#   make image                       # docker (or podman) build -t stowage:<version> .
#   docker run --rm stowage:0.1.0 --help
# The binary links only glibc and libgcc (TLS is rustls with ring: no OpenSSL), which the
# distroless `cc` base provides, together with CA certificates and a `nonroot` user (65532).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The registry and target dir are BuildKit cache mounts, so a rebuild after a source change
# recompiles only the workspace crates.
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY crates crates
COPY bench bench
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p stowage \
 && install -D -m 0755 target/release/stowage /out/stowage

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="stowage" \
      org.opencontainers.image.description="Stowage, a Kubernetes node provisioner for AWS (NodePool, NodeClaim and EC2NodeClass controllers)" \
      org.opencontainers.image.source="https://github.com/stowage-dev/stowage" \
      org.opencontainers.image.url="https://github.com/stowage-dev/stowage" \
      org.opencontainers.image.documentation="https://github.com/stowage-dev/stowage/tree/main/charts/stowage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Stowage"
COPY --from=build /out/stowage /usr/local/bin/stowage
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/stowage"]
CMD ["run"]
