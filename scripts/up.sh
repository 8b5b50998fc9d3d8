#!/usr/bin/env bash
# Brings Centaur up on one machine with the embedded defaults — Postgres-backed queue,
# local-process sandboxes, the offline `echo` harness — and runs one real turn through the
# public API (spawn → message → execute → GET execution), as in "6. Verify the deployment"
# of the production guide. The stack keeps running afterwards; stop it with
# `scripts/down.sh`. State lives in .centaur/ (env, logs, sandbox sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_tools curl jq
ensure_postgres

STATE_DIR="$PWD/.centaur"
mkdir -p "$STATE_DIR/logs" "$STATE_DIR/sandboxes"

step "database centaur"
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'centaur'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE centaur"

# Secrets are generated once and kept, so sandbox tokens survive restarts.
if [ ! -f "$STATE_DIR/env" ]; then
  step "generating local secrets in .centaur/env"
  {
    echo "SANDBOX_SIGNING_KEY=$(openssl rand -hex 32)"
    echo "SLACKBOT_API_KEY=cnt_local_slackbot_$(openssl rand -hex 16)"
    echo "IRON_MANAGEMENT_API_KEY=$(openssl rand -hex 32)"
  } > "$STATE_DIR/env"
  chmod 600 "$STATE_DIR/env"
fi
set -a
# shellcheck disable=SC1091
source "$STATE_DIR/env"
DATABASE_URL="${CENTAUR_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/centaur}"
QUEUE_BACKEND=postgres
SANDBOX_BACKEND=local
CENTAUR_DEFAULT_HARNESS="${CENTAUR_DEFAULT_HARNESS:-echo}"
CENTAUR_API_URL=http://127.0.0.1:8000
PORT=8000
DISPATCHER_PORT=9000
SANDBOX_COMMAND="$PWD/target/debug/sandbox"
SANDBOX_STATE_DIR="$STATE_DIR/sandboxes"
RUST_LOG="${RUST_LOG:-info}"
set +a

step "building api, dispatcher and sandbox"
cargo build -q -p api -p dispatcher -p sandbox

scripts/down.sh --quiet
step "starting api (:8000) and dispatcher (:9000); logs in .centaur/logs/"
nohup target/debug/api > "$STATE_DIR/logs/api.log" 2>&1 &
echo $! > "$STATE_DIR/api.pid"
nohup target/debug/dispatcher > "$STATE_DIR/logs/dispatcher.log" 2>&1 &
echo $! > "$STATE_DIR/dispatcher.pid"

for _ in $(seq 1 60); do
  curl -fsS http://localhost:8000/health/ready >/dev/null 2>&1 \
    && curl -fsS http://localhost:9000/readyz >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS http://localhost:8000/health/ready | jq -c .

step "one turn through the public API (harness: $CENTAUR_DEFAULT_HARNESS)"
API=http://localhost:8000
THREAD_KEY="local-smoke-$(date +%s)"
SPAWN=$(curl -fsS -X POST "$API/agent/spawn" -H "Content-Type: application/json" \
  -d "{\"thread_key\":\"${THREAD_KEY}\"}")
echo "spawn:   $SPAWN"
ASSIGNMENT_GENERATION=$(printf '%s' "$SPAWN" | jq -r '.assignment_generation')
MESSAGE=$(curl -fsS -X POST "$API/agent/message" -H "Content-Type: application/json" \
  -d "{\"thread_key\":\"${THREAD_KEY}\",\"assignment_generation\":${ASSIGNMENT_GENERATION},\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"Reply with exactly PONG.\"}]}")
echo "message: $MESSAGE"
EXECUTE=$(curl -fsS -X POST "$API/agent/execute" -H "Content-Type: application/json" \
  -d "{\"thread_key\":\"${THREAD_KEY}\",\"assignment_generation\":${ASSIGNMENT_GENERATION},\"delivery\":{\"platform\":\"dev\"}}")
echo "execute: $EXECUTE"
EXECUTION_ID=$(printf '%s' "$EXECUTE" | jq -r '.execution_id')

STATUS=queued
for _ in $(seq 1 120); do
  STATUS=$(curl -fsS "$API/agent/executions/${EXECUTION_ID}?events=false" | jq -r .status)
  case "$STATUS" in completed|failed_permanent|cancelled) break ;; esac
  sleep 0.25
done
step "GET /agent/executions/${EXECUTION_ID}"
curl -fsS "$API/agent/executions/${EXECUTION_ID}" | jq .
if [ "$STATUS" != completed ]; then
  echo "the turn ended as '$STATUS' — see .centaur/logs/dispatcher.log" >&2
  exit 1
fi
printf '\nCentaur is up: API http://localhost:8000, dispatcher http://localhost:9000. Stop it with scripts/down.sh\n'
