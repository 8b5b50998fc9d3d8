#!/usr/bin/env bash
# Brings Centaur up on one machine with the embedded defaults — Postgres-backed queue,
# local-process sandboxes (as a separate user), the offline `echo` harness — and runs one
# real turn through the public API (spawn → message → execute → GET execution), as in
# "6. Verify the deployment" of the production guide. The stack keeps running afterwards;
# stop it with `scripts/down.sh`. State lives in .centaur/ (env, logs, sandbox sockets).
#
# With CENTAUR_DEFAULT_HARNESS=codex (or claude-code, pi-mono, amp) it also installs the
# pinned harness CLIs and starts the local egress proxy (mitmproxy with
# contrib/egress-proxy, env-source config): the real keys you exported (OPENAI_API_KEY,
# ANTHROPIC_API_KEY, AMP_API_KEY, GITHUB_TOKEN) go to the proxy's environment only; the
# api, the dispatcher and every sandbox see placeholders.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

HARNESS="${CENTAUR_DEFAULT_HARNESS:-echo}"
# The real credentials the egress proxy may swap in; nothing else gets them.
REAL_KEYS=(OPENAI_API_KEY ANTHROPIC_API_KEY AMP_API_KEY GITHUB_TOKEN)
case "$HARNESS" in
  codex) NEEDED_KEY=OPENAI_API_KEY ;;
  claude-code | pi-mono) NEEDED_KEY=ANTHROPIC_API_KEY ;;
  amp) NEEDED_KEY=AMP_API_KEY ;;
  echo) NEEDED_KEY= ;;
  *) echo "unknown harness '$HARNESS' (echo, codex, claude-code, pi-mono, amp)" >&2; exit 2 ;;
esac
if [ -n "$NEEDED_KEY" ] && [ -z "${!NEEDED_KEY:-}" ]; then
  echo "CENTAUR_DEFAULT_HARNESS=$HARNESS needs $NEEDED_KEY in your shell (it goes to the egress proxy only)" >&2
  exit 2
fi

ensure_tools curl jq
ensure_postgres
ensure_sandbox_user

STATE_DIR="$PWD/.centaur"
mkdir -p "$STATE_DIR/logs" "$STATE_DIR/sandboxes"
# Sandboxes run as another user: they may pass through .centaur/ to their own directory
# but not list it, read the logs or the secrets.
chmod 711 "$STATE_DIR"
chmod 700 "$STATE_DIR/logs"

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
CENTAUR_DEFAULT_HARNESS="$HARNESS"
CENTAUR_API_URL=http://127.0.0.1:8000
PORT=8000
DISPATCHER_PORT=9000
SANDBOX_COMMAND="$PWD/target/debug/sandbox"
SANDBOX_STATE_DIR="$STATE_DIR/sandboxes"
RUST_LOG="${RUST_LOG:-info}"
set +a

scripts/down.sh --quiet

if [ "$HARNESS" != echo ]; then
  EGRESS_PORT="${CENTAUR_EGRESS_PORT:-8080}"
  EGRESS_DIR="$STATE_DIR/egress"
  step "harness CLIs at the sandbox image's pins (npm)"
  ensure_tools npm
  npm install --prefix tests/harnesses --no-audit --no-fund --no-package-lock --loglevel=error
  export PATH="$PWD/tests/harnesses/node_modules/.bin:$PATH"

  step "egress proxy on 127.0.0.1:$EGRESS_PORT (mitmproxy + contrib/egress-proxy, proxy.local.yaml)"
  command -v mitmdump >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check "$(grep '^mitmproxy' tests/requirements.txt)"
  mkdir -p "$EGRESS_DIR" && chmod 700 "$EGRESS_DIR"
  : > "$STATE_DIR/logs/egress.log"
  # The proxy's environment: the real keys from your shell, and nothing of the control plane.
  proxy_env=(PATH="$PATH" HOME="$HOME" LANG=C.UTF-8 PYTHONUNBUFFERED=1)
  for key in "${REAL_KEYS[@]}"; do
    [ -n "${!key:-}" ] && proxy_env+=("$key=${!key}")
  done
  nohup env -i "${proxy_env[@]}" mitmdump \
    -s contrib/egress-proxy/centaur_egress.py \
    --set centaur_config=contrib/egress-proxy/proxy.local.yaml \
    --set centaur_skip_unset=true \
    --set confdir="$EGRESS_DIR" \
    --listen-host 127.0.0.1 --listen-port "$EGRESS_PORT" \
    >> "$STATE_DIR/logs/egress.log" 2>&1 &
  echo $! > "$STATE_DIR/egress.pid"
  for _ in $(seq 1 120); do
    grep -q 'centaur_egress: ready' "$STATE_DIR/logs/egress.log" && [ -f "$EGRESS_DIR/mitmproxy-ca-cert.pem" ] && break
    kill -0 "$(cat "$STATE_DIR/egress.pid")" 2>/dev/null || { cat "$STATE_DIR/logs/egress.log" >&2; exit 1; }
    sleep 0.25
  done
  grep -q 'centaur_egress: ready' "$STATE_DIR/logs/egress.log" \
    || { echo "the egress proxy did not become ready; see .centaur/logs/egress.log" >&2; exit 1; }
  export SANDBOX_PROXY_URL="http://127.0.0.1:$EGRESS_PORT"
  export SANDBOX_CA_FILE="$EGRESS_DIR/mitmproxy-ca-cert.pem"
fi

step "building api, dispatcher and sandbox"
cargo build -q -p api -p dispatcher -p sandbox

step "migrations (api migrate)"
target/debug/api migrate

step "starting api (:8000) and dispatcher (:9000); logs in .centaur/logs/"
# The control plane never holds a model or Git credential: unset them for its processes.
without_keys=()
for key in "${REAL_KEYS[@]}"; do without_keys+=(-u "$key"); done
nohup env "${without_keys[@]}" target/debug/api > "$STATE_DIR/logs/api.log" 2>&1 &
echo $! > "$STATE_DIR/api.pid"
nohup env "${without_keys[@]}" target/debug/dispatcher > "$STATE_DIR/logs/dispatcher.log" 2>&1 &
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
