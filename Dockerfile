# The `centaur` control-plane image: functions/api (every route on :8000), the dispatcher and
# the single-purpose function binaries. Migrations are embedded in the binaries.
#   docker build -t centaur:latest .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/api target/release/dispatcher target/release/health \
       target/release/admin-api-keys target/release/agent-spawn target/release/agent-message \
       target/release/agent-execute target/release/agent-executions target/release/agent-events \
       target/release/agent-threads /out/

FROM debian:bookworm-slim
# curl and jq: the deployment guide's checks run `kubectl exec ... curl` inside this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl jq \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1001 centaur && useradd --uid 1001 --gid 1001 --no-create-home centaur
COPY --from=build /out/ /usr/local/bin/
USER 1001:1001
EXPOSE 8000 9000
CMD ["api"]
