# The `centaur` control-plane image: functions/api (every route on :8000), the dispatcher,
# every single-purpose function binary, the `centaur` CLI and `sandbox` (for the dispatcher's
# local backend). Migrations are embedded in the binaries.
#   docker build -t centaur:latest .
#
# Build arguments (the defaults are the public bases, so a plain `docker build` / `podman
# build` on a connected machine compiles everything here):
#   RUST_IMAGE    the build stage's image (cargo)
#   BASE_IMAGE    the runtime image: Debian bookworm
#   PREBUILT_DIR  a directory of the build context holding the binaries below, built
#                 elsewhere (glibc, on bookworm): copied, nothing compiled; RUST_IMAGE then
#                 only needs a shell (e.g. debian:bookworm-slim)
# Prebuilt binaries can also replace the whole stage `binaries` as a named build context,
#   podman build --build-context binaries=DIR ...      (DIR/out/<binary>; BuildKit alike)
# which is what scripts/images.sh does: it builds on the machine (compiling Rust inside the
# image on two cores is far too slow), and no layer copies the binaries twice.
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# /out: the binaries the README lists: api, dispatcher, every functions/<name>, centaur
# (the CLI) and sandbox (the dispatcher's local backend).
FROM ${RUST_IMAGE} AS binaries
ARG PREBUILT_DIR=
WORKDIR /src
COPY . .
RUN set -eu; mkdir /out; \
    bins="dispatcher centaur sandbox $(ls functions 2>/dev/null || true)"; \
    if [ -n "$PREBUILT_DIR" ]; then cp -a "$PREBUILT_DIR/." /out/; \
    else cargo build --release --locked --bins \
      && for bin in $bins; do cp "target/release/$bin" /out/; done; fi

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
