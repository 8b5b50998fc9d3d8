"""No image holds a secret: neither the test keys of this session nor any value of the local
secrets file (.centaur/env, written by scripts/up.sh) nor any secret-looking variable of the
environment that built and tests them, in the image's filesystem, its config (env, labels,
entrypoint) or its history. Neither does any image run as root by default, except the
one-machine dispatcher and Postgres/egress helpers, which say who they run as."""
import json
import os
import re
import subprocess

import pytest

from image_support import AGENT_IMAGE, CENTAUR_IMAGE, COMPOSE_IMAGES, ROOT, image_config, image_exists, podman

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Who each image runs as by default: the sandbox and control-plane images never as root.
USERS = {
    CENTAUR_IMAGE: "1001:1001",
    AGENT_IMAGE: "1001:1001",
    "localhost/centaur-postgres:latest": "postgres",
    "localhost/centaur-egress:latest": "1002:1002",
    # Root only to start each sandbox as the unprivileged `agent` (the local backend).
    "localhost/centaur-dispatcher-local:latest": "root",
}
# Files that must never be in an image: the build's CA mount, npm credentials, local state,
# a proxy CA's private key.
FORBIDDEN = ("mnt/ca.crt", "run/build-ca.crt", "root/.npmrc", "home/agent/.npmrc", "root/.npm", ".centaur",
             "mitmproxy-ca.pem")


def secret_values(real_keys):
    values = set(real_keys.values())
    env_file = ROOT / ".centaur" / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            if value.strip() and not name.startswith("#"):
                values.add(value.strip().strip("'\""))
    for name, value in os.environ.items():
        if SECRET_NAME.search(name) and len(value) >= 12 and value != name and "/" not in value:
            values.add(value)
    return sorted(v for v in values if len(v) >= 8)


def images_to_check():
    return [CENTAUR_IMAGE, AGENT_IMAGE, *[image for image in COMPOSE_IMAGES if image_exists(image)]]


@pytest.mark.parametrize("image", images_to_check())
def test_the_image_holds_no_secret_and_runs_as_its_user(image, real_keys, tmp_path):
    secrets = secret_values(real_keys)
    assert set(real_keys.values()) <= set(secrets)
    config = image_config(image)
    assert config["Config"].get("User") == USERS[image], config["Config"].get("User")

    history = podman("history", "--no-trunc", "--format", "json", image).stdout
    metadata = json.dumps(config) + history
    assert [s for s in secrets if s in metadata] == [], "a secret is in the image's config or history"

    patterns = tmp_path / "patterns"
    patterns.write_text("\n".join(secrets) + "\n")
    mountpoint = podman("image", "mount", image).stdout.strip()
    try:
        found = subprocess.run(["grep", "-rlF", "--no-messages", "-f", str(patterns), mountpoint],
                               capture_output=True, text=True, timeout=600)
        assert found.returncode == 1, f"secret values found in {image}:\n{found.stdout}{found.stderr}"
        present = [path for path in FORBIDDEN
                   if subprocess.run(["find", mountpoint, "-path", f"*/{path}", "-print", "-quit"],
                                     capture_output=True, text=True).stdout.strip()]
        assert present == [], f"{image} holds {present}"
    finally:
        podman("image", "unmount", image, check=False)
