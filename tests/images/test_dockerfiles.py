"""The Dockerfiles' other paths, which scripts/images.sh does not take: the default one a
connected machine takes (`docker build .`: compile in RUST_IMAGE from the repository as the
build context) and PREBUILT_DIR. No registry here, so RUST_IMAGE is a local stand-in
whose `cargo` writes a small script for each binary `cargo build --release` would make: what
is checked is the Dockerfiles themselves (stages, arguments, the binary set, the build
context without target/, .git or .centaur/), not the compiler."""
import pathlib

import pytest

from image_support import ROOT, podman, unique

BASE = "localhost/centaur-base:bookworm"
NODE = "localhost/centaur-node:20-bookworm"
FAKE_CARGO = r'''#!/bin/sh
# Stand-in for `cargo build --release ...`: one script per binary it would make.
set -eu
for leaked in target .git .centaur tests/harnesses/node_modules; do
  if [ -e "$leaked" ]; then echo "the build context holds $leaked" >&2; exit 1; fi
done
case "$*" in
  *"-p sandbox"*) bins=sandbox ;;
  *"--bins"*) bins="dispatcher centaur sandbox $(ls functions)" ;;
  *) echo "unexpected cargo $*" >&2; exit 1 ;;
esac
mkdir -p target/release
for bin in $bins; do
  printf '#!/bin/sh\necho "%s compiled in the image"\n' "$bin" >"target/release/$bin"
  chmod +x "target/release/$bin"
done
'''


@pytest.fixture(scope="module")
def fake_rust(tmp_path_factory):
    context = tmp_path_factory.mktemp("fake-rust")
    (context / "cargo").write_text(FAKE_CARGO)
    (context / "cargo").chmod(0o755)
    (context / "Containerfile").write_text(f"FROM {BASE}\nCOPY cargo /usr/local/bin/cargo\n")
    image = f"localhost/{unique()}:rust"
    podman("build", "-q", "--pull=never", "--network", "none", "-t", image, str(context))
    built = [image]
    yield image, built
    podman("rmi", "-f", *built, check=False)
    podman("image", "prune", "-f", check=False)


def functions():
    return sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "src" / "main.rs").exists())


def build(built, *args, network="none"):
    image = f"localhost/{unique()}:latest"
    built.append(image)
    podman("build", "--pull=never", "--network", network, "-t", image, *args, timeout=900)
    return image


def test_the_control_plane_dockerfile_compiles_in_the_image_by_default(fake_rust):
    rust, built = fake_rust
    image = build(built, "-f", str(ROOT / "Dockerfile"), "--build-arg", f"RUST_IMAGE={rust}",
                  "--build-arg", f"BASE_IMAGE={BASE}", str(ROOT))
    expected = sorted(["dispatcher", "centaur", "sandbox", *functions()])
    listing = podman("run", "--rm", "--network", "none", "--entrypoint", "ls", image, "/usr/local/bin").stdout.split()
    assert sorted(listing) == expected
    assert podman("run", "--rm", "--network", "none", image).stdout.strip() == "api compiled in the image"


def test_the_control_plane_dockerfile_takes_prebuilt_binaries(fake_rust, tmp_path):
    _, built = fake_rust
    names = ["dispatcher", "centaur", "sandbox", *functions()]
    bins = tmp_path / "prebuilt"
    bins.mkdir()
    for name in names:
        (bins / name).write_text(f'#!/bin/sh\necho "{name} prebuilt"\n')
        (bins / name).chmod(0o755)
    image = build(built, "-f", str(ROOT / "Dockerfile"), "--build-arg", "PREBUILT_DIR=prebuilt",
                  "--build-arg", f"RUST_IMAGE={BASE}", "--build-arg", f"BASE_IMAGE={BASE}", str(tmp_path))
    assert podman("run", "--rm", "--network", "none", image, "dispatcher").stdout.strip() == "dispatcher prebuilt"


def test_the_sandbox_dockerfile_compiles_sandbox_in_the_image_by_default(fake_rust, tmp_path):
    rust, built = fake_rust
    # The same CA mount and argument as scripts/images.sh, so the npm layer comes from its
    # cache (else npm installs the CLIs again, through this machine's network).
    ca = tmp_path / "build-ca"
    ca.mkdir()
    bundle = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
    (ca / "ca.crt").write_bytes(bundle.read_bytes() if bundle.exists() else b"")
    image = build(built, "-f", str(ROOT / "sandbox" / "Dockerfile"), "--build-arg", f"RUST_IMAGE={rust}",
                  "--build-arg", f"NODE_IMAGE={NODE}", "-v", f"{ca}:/mnt:ro",
                  "--build-arg", "BUILD_CA_FILE=/mnt/ca.crt", str(ROOT), network="host")
    out = podman("run", "--rm", "--network", "none", image, "--harness", "echo").stdout.strip()
    assert out == "sandbox compiled in the image"
    assert podman("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u").stdout.strip() == "1001"
