# The `centaur` control-plane image: functions/api (every route on :8000), the dispatcher,
# every single-purpose function binary, the `centaur` CLI and `sandbox` (for the dispatcher's
# local backend). Migrations are embedded in the binaries.
#   docker build -t centaur:latest .
#
# Build arguments (the defaults are the public bases, so a plain `docker build` / `podman
# build` on a connected machine compiles everything here):
#   RUST_IMAGE    the build stage's image (cargo)
#   BASE_IMAGE    the runtime image: Debian bookworm
#   BINARIES      `build` (compile here, the default) or `prebuilt`: copy the binaries from
#                 PREBUILT_DIR, a directory of the build context (glibc, built on bookworm),
#                 and compile nothing.
# Prebuilt binaries can also replace the stage `binaries` as a named build context:
#   podman build --build-context binaries=DIR ...      (DIR/out/<binary>; BuildKit alike)
# which is what scripts/images.sh does: it builds on the machine (compiling Rust inside the
# image on two cores is far too slow) and no layer copies the binaries twice.
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG BINARIES=build

# The binaries the README lists: api, dispatcher, every functions/<name>, centaur (the CLI)
# and sandbox (the dispatcher's local backend).
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && for bin in dispatcher centaur sandbox $(ls functions); do cp "target/release/$bin" /out/; done

# The same binaries, built elsewhere (scripts/images.sh stages exactly that set).
FROM scratch AS prebuilt
ARG PREBUILT_DIR=bin
COPY ${PREBUILT_DIR}/ /out/

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE}
# curl and jq: the deployment guide's checks run `kubectl exec ... curl` inside this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl jq \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1001 centaur && useradd --uid 1001 --gid 1001 --no-create-home centaur
USER 1001:1001
EXPOSE 8000 9000
CMD ["api"]
# Last, so that new binaries reuse every layer above.
COPY --from=binaries /out/ /usr/local/bin/
