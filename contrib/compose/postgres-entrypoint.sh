#!/bin/sh
# Initialises the cluster on first start (password auth, database `centaur` owned by the role
# `centaur`), then runs postgres in the foreground.
set -eu
port="${POSTGRES_PORT:-5432}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 --pwfile="$pwfile" >/dev/null
  rm -f "$pwfile"
  # Single-user mode: nothing listens while the role and the database are made.
  sql=$(mktemp)
  escaped=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
  printf "CREATE ROLE centaur LOGIN PASSWORD '%s';\nCREATE DATABASE centaur OWNER centaur;\n" "$escaped" >"$sql"
  postgres --single -D "$PGDATA" postgres <"$sql" >/dev/null
  rm -f "$sql"
  echo "postgres: initialised $PGDATA (database centaur)"
fi
exec postgres -D "$PGDATA" -c listen_addresses="${POSTGRES_LISTEN:-127.0.0.1}" -c port="$port" \
  -c unix_socket_directories=/var/run/postgresql
