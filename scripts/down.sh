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
# A sandbox's pid file holds "<pid> <start time>": its process is signalled only while that
# pid still names it (field 22 of /proc/<pid>/stat), never a process given the pid since.
for pid_file in "$STATE_DIR"/sandboxes/*/pid; do
  [ -f "$pid_file" ] || continue
  read -r pid started < "$pid_file"
  now=$(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$pid/stat" 2>/dev/null) || continue
  if [ -z "${started:-}" ] || [ "$now" = "$started" ]; then
    kill "$pid" 2>/dev/null
  fi
done
exit 0
