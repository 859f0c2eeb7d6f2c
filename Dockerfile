# syntax=docker/dockerfile:1
# Buoy's container images, one per binary, from one build, for amd64 and arm64 (the builder
# cross-compiles on the build machine's own architecture: no emulation during the build):
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target operator -t ghcr.io/buoy-io/buoy-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --target agent    -t ghcr.io/buoy-io/buoy-agent:0.1.0 .
#
# The chart (charts/buoy) runs the operator image as `/usr/local/bin/buoy-operator run …` and
# passes the agent image to the operator (--agent-image), whose DaemonSets run
# `/usr/local/bin/buoy-agent run …`. The agent image also carries the kubectl plugin
# (`/usr/local/bin/kubectl-buoy`). tests/tests/chart.rs checks that the binaries copied here are
# the workspace's and that these entrypoints match the chart.

# ---- build: the binaries for TARGETARCH, release profile, locked dependencies ----
# The agent ships built with profile-guided optimisation (docs/proxy.md): `scripts/release`
# trains it on the build host (the training needs network namespaces, which a build container
# lacks) and leaves the merged profile in dist/pgo.profdata; the amd64 build here applies it, so
# run scripts/release first, with this image's Rust (a profile is read by the LLVM version that
# wrote it). The agent is built as scripts/release builds it (its `pgo` profile, the agent alone,
# so that the features are the same): symbols must match the profile's (Cargo.toml). Without the
# file, and for arm64, a plain release build.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
# The commit in the binaries' buoy_build_info metric (the context has no .git):
# --build-arg BUOY_COMMIT=$(git rev-parse --short=12 HEAD). Their build script (build-commit.rs) reads it.
ARG BUOY_COMMIT=unknown
# Debian's cross toolchain for arm64 (the linker named in .cargo/config.toml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && if [ "$TARGETARCH" = arm64 ]; then apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross; fi \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$triple" \
 && cargo build --release --locked --target "$triple" -p buoy-operator -p kubectl-buoy \
 && agent=release \
 && if [ "$TARGETARCH" = amd64 ] && [ -f dist/pgo.profdata ]; then agent=pgo; fi \
 && if [ "$agent" = pgo ]; then \
      RUSTFLAGS="-Cprofile-use=/src/dist/pgo.profdata" \
        cargo build --profile pgo --locked --target "$triple" -p buoy-agent --bin buoy-agent; \
    else \
      cargo build --release --locked --target "$triple" -p buoy-agent --bin buoy-agent; \
    fi \
 && mkdir -p /out \
 && cp target/"$triple"/release/buoy-operator target/"$triple"/"$agent"/buoy-agent target/"$triple"/release/kubectl-buoy /out/

# ---- operator: non-root, nothing but the binary on a glibc base ----
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
LABEL org.opencontainers.image.title="buoy-operator" \
      org.opencontainers.image.description="Buoy operator: VirtualIPs and UpstreamPools into node agents" \
      org.opencontainers.image.source="https://github.com/buoy-io/buoy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/buoy-operator /usr/local/bin/buoy-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/buoy-operator"]
CMD ["run"]

# ---- agent: runs as root in the host network with NET_ADMIN, NET_RAW and NET_BIND_SERVICE
# only (the operator's DaemonSet drops every other capability). Debian slim rather than
# distroless: the connection handover rules are written with iptables-restore (docs/vrrp.md);
# ca-certificates: the CA certificates that UpstreamPools' tls verifies backends with when they
# name no caSecretName (docs/proxy.md); frr and frr-pythontools (with python3): the vtysh and
# frr-reload.py through which the BGP mode drives FRR, in the Pod's `frr` container (the
# chart's agent.frr) or on the host (docs/bgp.md). Bookworm's FRR is 8.4, the version of the
# chart's FRR image: vtysh knows the daemons of its own version. Its daemons are not started
# here ----
FROM debian:bookworm-slim AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates frr frr-pythontools \
 && rm -rf /var/lib/apt/lists/*
LABEL org.opencontainers.image.title="buoy-agent" \
      org.opencontainers.image.description="Buoy node agent: VRRP, virtual addresses and the proxy" \
      org.opencontainers.image.source="https://github.com/buoy-io/buoy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/buoy-agent /usr/local/bin/buoy-agent
# `kubectl buoy`, for operators to take from the image (docker cp, or --entrypoint kubectl-buoy
# with a kubeconfig mounted); docs/operations.md.
COPY --from=build /out/kubectl-buoy /usr/local/bin/kubectl-buoy
EXPOSE 9901
ENTRYPOINT ["/usr/local/bin/buoy-agent"]
CMD ["run"]
