//! `Dockerfile`: the one image every service (and the load generator) runs.
//!
//! It builds `palette` from the Palette repository — the build context is
//! the repository, not the system directory — in a Rust builder of the same
//! Debian release as the runtime image (so the binary finds the glibc it
//! was linked against), and runs it as a fixed non-root user that
//! Kubernetes' `runAsNonRoot` can check. `Dockerfile.dockerignore` beside it
//! keeps `target/` and `.git` out of the context (BuildKit reads a
//! Dockerfile's own ignore file).

use crate::k8s::UID;

/// Renders `Dockerfile`.
pub fn render() -> String {
    format!(
        r#"# The image of a Palette system: the `palette` binary, run as a non-root user.
# Build it from the Palette repository (the build context is the repository),
# with BuildKit (Docker 23+ has it by default; 20.10: DOCKER_BUILDKIT=1):
#   docker build -t palette:latest -f Dockerfile /path/to/palette
# Dockerfile.dockerignore beside this file keeps target/ and .git out of the
# context; with another Dockerfile name, put those two lines in the
# repository's .dockerignore.
#
# Already built Palette? `palette image` makes the same image from your
# binary in seconds, with no Rust toolchain and no base image.
#
# No registry? Both stages' images are build arguments: make them locally
# (e.g. `debootstrap --variant=minbase bookworm DIR` then
# `tar -C DIR -c . | docker import - debian:bookworm-slim`) and pass
#   --build-arg RUST_IMAGE=... --build-arg BASE_IMAGE=...

# Same Debian release as the runtime stage: the binary needs its glibc.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# hadolint ignore=DL3006
FROM ${{RUST_IMAGE}} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p palette \
 && install -m 0755 target/release/palette /usr/local/bin/palette

# hadolint ignore=DL3006
FROM ${{BASE_IMAGE}}
# A fixed uid, so Kubernetes can check runAsNonRoot; /etc/palette is where
# system.json is mounted and the span file is written. Nothing is installed:
# the health check is `palette health`, so the build needs no package mirror.
RUN groupadd --system --gid {UID} palette \
 && useradd --system --uid {UID} --gid palette --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin palette \
 && install -d -o palette -g palette /etc/palette
COPY --from=build /usr/local/bin/palette /usr/local/bin/palette
USER {UID}:{UID}
WORKDIR /etc/palette
ENTRYPOINT ["/usr/local/bin/palette"]
CMD ["--help"]
"#
    )
}

/// Renders `Dockerfile.dockerignore`.
pub fn dockerignore() -> String {
    "# The build context is the Palette repository: leave out build output and history.\ntarget/\n.git/\n".into()
}

/// Renders `Dockerfile.system`: the base image with `system.json` in it,
/// for systems too big for a ConfigMap.
pub fn render_system(base: &str) -> String {
    format!(
        "# The image of this system on Kubernetes: system.json is too big for a ConfigMap,\n\
         # so it travels in the image. Build it here, after the base image (see Dockerfile):\n\
         #   docker build -t IMAGE -f Dockerfile.system .\n\
         # The base is the image named at generate time (--image), whatever its tag.\n\
         # hadolint ignore=DL3007\n\
         FROM {base}\n\
         COPY system.json {}\n",
        crate::k8s::BAKED_SYSTEM
    )
}
