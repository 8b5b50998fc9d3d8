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
#                 and compile nothing. scripts/images.sh builds on the machine and stages
#                 target/release (or target/debug) binaries in a context of their own.
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG BINARIES=build

# The binaries the README lists: api, dispatcher, each functions/<name>, centaur (the CLI)
# and sandbox (the dispatcher's local backend). Keep both lists below the same.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cd target/release \
 && cp api dispatcher health admin-api-keys agent-spawn agent-message agent-execute \
       agent-executions agent-events agent-threads final-deliveries slack-webhook \
       centaur sandbox /out/

FROM scratch AS prebuilt
ARG PREBUILT_DIR=bin
COPY ${PREBUILT_DIR}/api ${PREBUILT_DIR}/dispatcher ${PREBUILT_DIR}/health \
     ${PREBUILT_DIR}/admin-api-keys ${PREBUILT_DIR}/agent-spawn ${PREBUILT_DIR}/agent-message \
     ${PREBUILT_DIR}/agent-execute ${PREBUILT_DIR}/agent-executions ${PREBUILT_DIR}/agent-events \
     ${PREBUILT_DIR}/agent-threads ${PREBUILT_DIR}/final-deliveries ${PREBUILT_DIR}/slack-webhook \
     ${PREBUILT_DIR}/centaur ${PREBUILT_DIR}/sandbox /out/

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
