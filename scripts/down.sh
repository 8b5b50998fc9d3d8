#!/usr/bin/env bash
# Stops what scripts/up.sh started (api, dispatcher, the egress proxy, local sandboxes).
set -uo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="$PWD/.centaur"
for name in dispatcher api egress; do
  pid_file="$STATE_DIR/$name.pid"
  if [ -f "$pid_file" ]; then
    kill "$(cat "$pid_file")" 2>/dev/null && [ "${1:-}" != --quiet ] && echo "stopped $name"
    rm -f "$pid_file"
  fi
done
for pid_file in "$STATE_DIR"/sandboxes/*/pid; do
  [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null
done
exit 0
