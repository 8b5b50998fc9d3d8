"""compose.yaml on one machine, brought up by podman-compose from the locally built images:
PostgreSQL, the API, the dispatcher (sandboxes as processes of its container, as the user
`agent`) and the egress proxy holding the only real key. The production guide's checks run
inside the api container; its smoke turn runs with the default harness, codex, whose
requests leave the sandbox through the egress proxy, which routes api.openai.com to the fake
model server (the test's override adds tests/support/route_to_fakes.py to the proxy) — so a
real CLI answers through the whole stack, and only the proxy ever holds the key.

The services use the host's network, on free ports: nothing else on this machine is touched."""
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys

import pytest

from image_support import COMPOSE_IMAGES, ROOT, image_exists, podman, wait_until

THREAD_KEY = "production-smoke-codex"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def compose(fake_models, real_keys, tmp_path_factory):
    """The stack, up; yields (env, run) where run(*args) runs podman-compose on it."""
    if importlib.util.find_spec("podman_compose") is None:
        pytest.fail("podman-compose is not installed: python3 -m pip install podman-compose (scripts/test.sh does)")
    missing = [image for image in COMPOSE_IMAGES if not image_exists(image)]
    assert not missing, f"missing {missing}: scripts/images.sh --compose builds them"
    project = f"centaur-test-{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "SANDBOX_SIGNING_KEY": secrets.token_hex(32),
        "CENTAUR_API_PORT": str(free_port()),
        "CENTAUR_DISPATCHER_PORT": str(free_port()),
        "CENTAUR_EGRESS_PORT": str(free_port()),
        "CENTAUR_POSTGRES_PORT": str(free_port()),
        "CENTAUR_DEFAULT_HARNESS": "codex",
        "OPENAI_API_KEY": real_keys["OPENAI_API_KEY"],
    }
    for name in ("ANTHROPIC_API_KEY", "AMP_API_KEY", "GITHUB_TOKEN", "SLACK_BOT_TOKEN", "SLACKBOT_API_KEY"):
        env.pop(name, None)
    # The test's only addition: the proxy routes api.openai.com to the fake model server.
    override = tmp_path_factory.mktemp("compose") / "compose.test.yaml"
    routes = json.dumps({"api.openai.com": fake_models["openai"].address})
    override.write_text(json.dumps({"services": {"egress": {
        "command": ["-s", "/centaur-test/route_to_fakes.py", "--set", f"centaur_routes={routes}"],
        "volumes": [f"{ROOT / 'tests' / 'support' / 'route_to_fakes.py'}:/centaur-test/route_to_fakes.py:ro"],
    }}}))

    def run(*args, check=True, timeout=300):
        result = subprocess.run([sys.executable, "-m", "podman_compose", "-p", project, "-f", str(ROOT / "compose.yaml"), "-f", str(override),
                                 *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    try:
        run("up", "-d")
        yield env, run, project
    finally:
        for service in ("api", "dispatcher", "egress", "postgres"):
            print(podman("logs", "--tail", "30", f"{project}_{service}_1", check=False).stderr[-3000:])
        run("down", "-v", check=False)


def container(project, service):
    return f"{project}_{service}_1"


def test_the_stack_comes_up_and_a_codex_turn_runs_through_the_egress_proxy(compose, models, real_keys):
    env, run, project = compose
    api = container(project, "api")
    port = env["CENTAUR_API_PORT"]
    base = f"http://localhost:{port}"

    def curl(*args, check=True):
        return podman("exec", api, "curl", *args, check=check, timeout=60)

    # The guide's checks, inside the api container (podman exec for kubectl exec).
    wait_until(lambda: curl("-fsS", f"{base}/health/ready", check=False).returncode == 0, 120,
               what="the api ready (Postgres up, migrations applied)")
    assert json.loads(curl("-fsS", f"{base}/health/ready").stdout)["database"] is True
    tools = curl("-fsS", f"{base}/health/tools").stdout
    assert "codex" in tools, tools
    created = json.loads(curl("-fsS", "-X", "POST", f"{base}/admin/api-keys", "-H", "Content-Type: application/json",
                              "-d", '{"name":"operator","scopes":["admin"],"created_by":"ops"}').stdout)
    assert created["key"].startswith("cnt_"), created

    # The egress proxy published its CA (only the certificate) for the dispatcher's sandboxes.
    wait_until(lambda: podman("exec", container(project, "dispatcher"), "test", "-s", "/egress-ca/ca.crt",
                              check=False).returncode == 0, 60, what="the egress proxy's CA in the shared volume")

    # The guide's smoke turn with the default harness (codex): spawn → message → execute.
    spawn = json.loads(curl("-s", "-X", "POST", f"{base}/agent/spawn", "-H", "Content-Type: application/json",
                            "-d", json.dumps({"thread_key": THREAD_KEY})).stdout)
    generation = spawn["assignment_generation"]
    curl("-s", "-X", "POST", f"{base}/agent/message", "-H", "Content-Type: application/json",
         "-d", json.dumps({"thread_key": THREAD_KEY, "assignment_generation": generation, "role": "user",
                           "parts": [{"type": "text", "text": "Reply with exactly PONG."}]}))
    execute = json.loads(curl("-s", "-X", "POST", f"{base}/agent/execute", "-H", "Content-Type: application/json",
                              "-d", json.dumps({"thread_key": THREAD_KEY, "assignment_generation": generation,
                                                "delivery": {"platform": "dev"}})).stdout)
    execution_id = execute["execution_id"]

    def finished():
        row = json.loads(curl("-s", f"{base}/agent/executions/{execution_id}").stdout)
        return row if row["status"] not in ("queued", "running") else None

    row = wait_until(finished, 180, interval=1, what=f"execution {execution_id} finishing")
    assert row["status"] == "completed", json.dumps(row, indent=1)
    assert row["harness"] == "codex" and row["result_text"] == "PONG", row

    # The model saw only the real key, swapped in by the proxy; no other container holds it.
    server = models["openai"]
    assert server.script.requests and server.script.violations == [], server.script.violations
    assert {r["credential"] for r in server.script.requests} == {server.expected}
    assert not server.placeholder_seen()
    key = real_keys["OPENAI_API_KEY"]
    for service in ("api", "dispatcher", "postgres"):
        inspected = podman("inspect", container(project, service)).stdout
        assert key not in inspected, f"the real key is in the {service} container's spec"
    assert key in podman("inspect", container(project, "egress")).stdout


def test_the_services_run_as_their_users(compose):
    _, _, project = compose
    users = {service: podman("exec", container(project, service), "id", "-un").stdout.strip()
             for service in ("api", "postgres", "egress", "dispatcher")}
    assert users == {"api": "centaur", "postgres": "postgres", "egress": "egress", "dispatcher": "root"}, users
    # The dispatcher's sandboxes are processes of the unprivileged `agent`, never root.
    sandbox_users = podman("exec", container(project, "dispatcher"), "sh", "-c",
                           "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); "
                           "case \"$c\" in *sandbox\\ --harness*) stat -c %U $p;; esac; done").stdout.split()
    assert sandbox_users and set(sandbox_users) == {"agent"}, sandbox_users
