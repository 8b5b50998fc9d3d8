#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, the Rust tests (real Postgres, moto SQS,
# real HTTP between processes) and the Helm chart tests (real Helm via helm-python-sdk).
# Installs and starts what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_postgres
ensure_sandbox_user
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

step "installing Python test tools (moto server, cfn-lint, helm-python-sdk, kubernetes-validate, mitmproxy, schemathesis) and git"
python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt
# The suites' pins (schemathesis, mitmproxy, moto) must agree.
python3 -m pip check
if ! command -v git >/dev/null 2>&1 || [ ! -x "$(git --exec-path)/git-http-backend" ]; then
  apt-get update -qq && apt-get install -y -qq git >/dev/null
fi

step "installing the harness CLIs for the conformance tests (npm, pinned)"
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
npm install --prefix tests/harnesses --no-audit --no-fund --no-package-lock --loglevel=error

step "installing Debian's Chromium and playwright-core for the web console's browser test"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
npm install --prefix tests/console --no-audit --no-fund --no-package-lock --loglevel=error

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "building binaries used by the cross-process tests"
cargo build --workspace --bins

# The container images (scripts/images.sh: podman, a cached debootstrap base, these debug
# binaries stripped), built once per run while the Rust tests run, and tested by
# tests/images, which never skip here: a machine where podman cannot build them fails.
step "building the container images in the background (log: target/images.log)"
python3 -m pip install -q --disable-pip-version-check podman-compose
bash scripts/images.sh --profile debug --no-build --compose >target/images.log 2>&1 &
images_pid=$!
export CENTAUR_REQUIRE_IMAGES=1

step "Rust tests"
rust_status=0
cargo nextest run --workspace --no-fail-fast || rust_status=$?

step "container images"
if ! wait "$images_pid"; then
  cat target/images.log
  echo "scripts/images.sh failed: the container images could not be built (log above)" >&2
  exit 1
fi
sed -n '/^==> images/,$p' target/images.log
[ "$rust_status" -eq 0 ] || exit "$rust_status"

step "Python tests (Helm chart, AWS template, harness CLI conformance, container images, schemathesis against a live api)"
status=0
python3 -m pytest tests -q -p no:cacheprovider || status=$?
# pytest exits 5 when it collects no test: not a failure of this script.
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
