"""Helpers of the image tests (tests/images): podman, the images scripts/images.sh builds, a
sandbox container spoken to over the sandbox's stdin protocol, and the pod's environment as
shared/kubernetes/src/pod.rs builds it."""
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
for extra in (ROOT / "tests" / "support", ROOT / "tests" / "harnesses"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

CENTAUR_IMAGE = os.environ.get("CENTAUR_IMAGE", "localhost/centaur:latest")
AGENT_IMAGE = os.environ.get("CENTAUR_AGENT_IMAGE", "localhost/centaur-agent:latest")
COMPOSE_IMAGES = ("localhost/centaur-postgres:latest", "localhost/centaur-egress:latest",
                  "localhost/centaur-dispatcher-local:latest")
BUILD_HINT = "build them with: scripts/images.sh --profile debug --compose (scripts/test.sh does)"
# CI (and scripts/test.sh) never skip: a machine where podman cannot run fails there.
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("CENTAUR_REQUIRE_IMAGES") == "1"

# The pod spec (execution.md "Sandbox pod spec", shared/kubernetes/src/pod.rs).
SANDBOX_UID = 1001
CA_DIR = "/firewall-certs"
CA_FILE = "/firewall-certs/ca.crt"
PROMPTS_DIR = "/centaur/prompts"
PLACEHOLDERS = {name: name for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AMP_API_KEY", "GITHUB_TOKEN")}
CA_VARIABLES = ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO")
# The pod's container securityContext, as podman options: no privilege escalation, no
# capabilities, the default seccomp profile (podman's default).
POD_SECURITY = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def podman(*args, check=True, timeout=300, input=None):
    """Runs `podman ARGS`, returning the CompletedProcess (text)."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def podman_problem():
    """Why podman cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/images.sh installs podman, runc and debootstrap)"
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
    if info.returncode != 0:
        return f"podman cannot run on this machine: {info.stderr.strip()[-500:]}"
    return None


def image_exists(image):
    return podman("image", "exists", image, check=False).returncode == 0


def unique(prefix="centaur-test"):
    return f"{prefix}-{secrets.token_hex(4)}"


def pod_env(proxy_url, thread_key="images", api_url="http://centaur-centaur-api.centaur-system.svc:8000"):
    """The sandbox container's env, as pod.rs `env` builds it: the caller's (API URL, a
    `sbx1.` token, the thread key, placeholders), then the egress settings (proxy, bypass
    list with the in-cluster API host, the CA mounted at /firewall-certs), the prompts dir
    and HOME. PATH is the image's."""
    env = {
        "CENTAUR_API_URL": api_url,
        "CENTAUR_API_KEY": "sbx1.eyJ0aHJlYWRfa2V5IjoiaW1hZ2VzIn0.not-a-real-signature",
        "CENTAUR_THREAD_KEY": thread_key,
        **PLACEHOLDERS,
        "NO_PROXY": "localhost,127.0.0.1,centaur-centaur-api.centaur-system.svc",
        "CENTAUR_PROMPTS_DIR": PROMPTS_DIR,
        "HOME": "/home/agent",
    }
    env["no_proxy"] = env["NO_PROXY"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy_url
    for name in CA_VARIABLES:
        env[name] = CA_FILE
    return env


def read_only_dir(path, files):
    """A directory holding `files` ({name: text or bytes}), readable by any uid: what a
    Secret volume shows the pod."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    for name, content in files.items():
        target = path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        target.chmod(0o644)
    return path


class SandboxContainer:
    """`sandbox --harness <h>` in a container of the centaur-agent image, as the pod runs it:
    the image's user, stdin open, the pod's env, the proxy CA and the prompts mounted
    read-only, no capabilities, no privilege escalation."""

    def __init__(self, harness, env, *, network="host", ca_dir=None, prompts_dir=None, image=AGENT_IMAGE):
        self.name = unique("centaur-test-sandbox")
        args = ["podman", "run", "-i", "--rm", "--name", self.name, "--network", network,
                *POD_SECURITY, "--workdir", "/home/agent", "--entrypoint", "sandbox"]
        if ca_dir is not None:
            args += ["-v", f"{ca_dir}:{CA_DIR}:ro"]
        if prompts_dir is not None:
            args += ["-v", f"{prompts_dir}:{PROMPTS_DIR}:ro"]
        for name, value in env.items():
            args += ["-e", f"{name}={value}"]
        args += [image, "--harness", harness]
        self.process = subprocess.Popen(args, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)

    def turn(self, execution_id, text, timeout=180, **extra):
        line = {"type": "user", "thread_key": "images", "execution_id": execution_id,
                "message": {"role": "user", "content": [{"type": "text", "text": text}]}, **extra}
        self.process.stdin.write(json.dumps(line) + "\n")
        self.process.stdin.flush()
        events = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.process.stdout.readline()
            if not out:
                break
            event = json.loads(out)
            events.append(event)
            if event["type"] == "turn.done":
                return events
        self.close()
        raise AssertionError(f"no turn.done within {timeout}s: {events}\nstderr: {self.process.stderr.read()[-3000:]}")

    def close(self):
        podman("rm", "-f", "-t", "0", self.name, check=False, timeout=60)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


def image_config(image):
    return json.loads(podman("image", "inspect", image).stdout)[0]


def wait_until(check, timeout, interval=0.5, what="condition"):
    """Calls check() until it returns a truthy value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - reported below if it never succeeds
            last = err
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last error: {last!r})")
