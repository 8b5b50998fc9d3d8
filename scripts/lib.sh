# Shared helpers for scripts/*.sh. Sourced, not run.

# Prints a step heading.
step() { printf '\n==> %s\n' "$*"; }

# Makes sure a PostgreSQL server answers on 127.0.0.1:5432, installing and starting
# Debian's package when none does.
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  step "starting PostgreSQL"
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local conf_dir="/etc/postgresql/$version/main"
  # Trust auth on loopback, as on the project's machines (a throwaway local server).
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf_dir/pg_hba.conf" 2>/dev/null; then
    sed -i 's/^\(host.*127.0.0.1\/32\s*\).*$/\1trust/; s/^\(local\s*all\s*postgres\s*\).*$/\1trust/' "$conf_dir/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 1
  done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  return 1
}

# Installs the Debian tools the scripts call, when missing.
ensure_tools() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Makes sure the unprivileged user that local sandboxes run as exists (SANDBOX_LOCAL_USER,
# default centaur-sandbox) when running as root; the dispatcher refuses to start without
# it. Warns when the sandbox program's directory is not searchable by that user.
ensure_sandbox_user() {
  local user="${SANDBOX_LOCAL_USER:-centaur-sandbox}"
  [ "$(id -u)" -eq 0 ] || return 0
  if ! getent passwd "$user" >/dev/null; then
    step "creating the local sandbox user $user"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" 2>/dev/null || getent passwd "$user" >/dev/null
  fi
  local dir="$PWD"
  while [ "$dir" != / ]; do
    if ! runuser -u "$user" -- test -x "$dir" 2>/dev/null; then
      echo "warning: $dir is not searchable by $user: local sandboxes cannot run target/debug/sandbox from here (chmod o+x $dir)" >&2
      return 0
    fi
    dir=$(dirname "$dir")
  done
}
