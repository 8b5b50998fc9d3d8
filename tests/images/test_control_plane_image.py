"""The centaur image as the chart runs it: an `api` and a `dispatcher` container against the
test Postgres (a fresh database), and the production guide's verification run inside the api
container exactly as the guide runs it through `kubectl exec` (here `podman exec`):
/health, /health/ready, /health/tools, POST /admin/api-keys, then spawn → message → execute →
GET /agent/executions/<id>. Every binary the README lists is in the image and runs there.

The two containers share a network namespace of their own (`--network none` for the api, the
dispatcher joining it), so `localhost:8000` inside them is theirs, as in a pod, whatever this
machine already runs on :8000. Postgres is reached through its Unix socket, mounted in. The
dispatcher uses the local sandbox backend (the cluster's Kubernetes API is the one part that
cannot run here): it runs as root only to start each sandbox as the image's user `centaur`."""
import json
import os
import pathlib
import re
import secrets
import subprocess

import pytest

from image_support import CENTAUR_IMAGE, ROOT, podman, unique, wait_until

SOCKET_DIR = os.environ.get("CENTAUR_PG_SOCKET_DIR", "/var/run/postgresql")
THREAD_KEY = "production-smoke-echo"


def psql(sql):
    subprocess.run(["psql", "-h", SOCKET_DIR, "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                    "-qc", sql], check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def database():
    """A fresh database on the test Postgres, dropped afterwards; its URL as the containers
    reach it (the socket directory mounted at the same path)."""
    if not pathlib.Path(SOCKET_DIR, ".s.PGSQL.5432").exists():
        pytest.fail(f"the test Postgres socket is not in {SOCKET_DIR} (scripts/test.sh starts PostgreSQL)")
    name = f"centaur_img_{secrets.token_hex(4)}"
    psql(f"CREATE DATABASE {name}")
    yield f"postgres://postgres@localhost/{name}?host={SOCKET_DIR}"
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def stack(database):
    """`api migrate`, then the api container (its own network namespace, :8000) and the
    dispatcher container in the same namespace. Yields the api container's name."""
    api, dispatcher = unique("centaur-test-api"), unique("centaur-test-dispatcher")
    common = ["-v", f"{SOCKET_DIR}:{SOCKET_DIR}", "-e", f"DATABASE_URL={database}",
              "-e", f"SANDBOX_SIGNING_KEY={secrets.token_hex(32)}", "-e", "CENTAUR_DEFAULT_HARNESS=echo"]
    try:
        podman("run", "--rm", "--network", "none", *common, CENTAUR_IMAGE, "api", "migrate", timeout=120)
        podman("run", "-d", "--name", api, "--network", "none", *common, CENTAUR_IMAGE)  # CMD ["api"]
        podman("run", "-d", "--name", dispatcher, "--network", f"container:{api}", "--user", "0:0", *common,
               "-e", "SANDBOX_BACKEND=local", "-e", "SANDBOX_LOCAL_USER=centaur",
               "-e", "CENTAUR_API_URL=http://127.0.0.1:8000", CENTAUR_IMAGE, "dispatcher")
        wait_until(lambda: exec_in(api, "curl", "-fsS", "http://localhost:8000/health", check=False).returncode == 0,
                   60, what=f"the api answering /health\n{logs(api)}")
        wait_until(lambda: exec_in(api, "curl", "-fsS", "http://localhost:9000/healthz", check=False).returncode == 0,
                   60, what=f"the dispatcher answering on :9000\n{logs(dispatcher)}")
        yield api
    finally:
        for name in (dispatcher, api):  # the dispatcher first: it lives in the api's namespace
            podman("rm", "-f", "-t", "2", name, check=False, timeout=120)


def exec_in(container, *argv, check=True):
    return podman("exec", container, *argv, check=check, timeout=60)


def logs(container):
    result = podman("logs", "--tail", "60", container, check=False)
    return f"--- {container} ---\n{result.stdout}{result.stderr}"


def readme_binaries():
    """The binaries the README says the image holds: the `functions/<name>/` row's names,
    `functions/api`, the dispatcher, the `centaur` CLI, and every functions/* crate."""
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `functions/<name>/`"))
    listed = re.findall(r"`([a-z][a-z-]+)`", row.split("|")[2])
    assert "health" in listed and len(listed) >= 10, row
    crates = [p.name for p in (ROOT / "functions").iterdir() if (p / "src" / "main.rs").exists()]
    return sorted(set(listed) | set(crates) | {"api", "dispatcher", "centaur", "sandbox"})


def test_every_binary_the_readme_lists_is_in_the_image():
    expected = readme_binaries()
    present = podman("run", "--rm", "--network", "none", "--entrypoint", "sh", CENTAUR_IMAGE, "-c",
                     'for b in "$@"; do [ -x "/usr/local/bin/$b" ] && echo "$b"; done', "sh", *expected).stdout.split()
    assert sorted(present) == expected, f"missing from the image: {sorted(set(expected) - set(present))}"
    routes = podman("run", "--rm", "--network", "none", CENTAUR_IMAGE, "api", "routes").stdout
    assert json.loads(routes), "api routes prints the routes"
    assert "Usage" in podman("run", "--rm", "--network", "none", CENTAUR_IMAGE, "centaur", "--help").stdout


def test_the_image_runs_as_uid_1001():
    user = json.loads(podman("image", "inspect", CENTAUR_IMAGE).stdout)[0]["Config"]["User"]
    assert user == "1001:1001"
    ids = podman("run", "--rm", "--network", "none", CENTAUR_IMAGE, "id").stdout
    assert ids.startswith("uid=1001(centaur) gid=1001(centaur)"), ids


def test_the_guides_verification_runs_inside_the_api_container(stack):
    api = stack
    # kubectl exec -n centaur-system deploy/centaur-centaur-api -- curl -fsS http://localhost:8000/health
    health = exec_in(api, "curl", "-fsS", "http://localhost:8000/health")
    assert health.returncode == 0 and health.stdout, health
    ready = json.loads(exec_in(api, "curl", "-fsS", "http://localhost:8000/health/ready").stdout)
    assert ready, ready
    tools = json.loads(exec_in(api, "curl", "-fsS", "http://localhost:8000/health/tools").stdout)
    assert "codex" in json.dumps(tools), tools
    created = json.loads(exec_in(
        api, "curl", "-fsS", "-X", "POST", "http://localhost:8000/admin/api-keys",
        "-H", "Content-Type: application/json",
        "-d", '{"name":"operator","scopes":["admin"],"created_by":"ops"}').stdout)
    admin_key = created["key"]
    assert admin_key.startswith("cnt_") and "admin" in created["scopes"], created

    # Run one agent turn from inside the API deployment (the guide's commands, in order).
    spawn = exec_in(api, "curl", "-s", "-X", "POST", "http://localhost:8000/agent/spawn",
                    "-H", "Content-Type: application/json", "-d", json.dumps({"thread_key": THREAD_KEY})).stdout
    generation = json.loads(spawn)["assignment_generation"]
    message = {"thread_key": THREAD_KEY, "assignment_generation": generation, "role": "user",
               "parts": [{"type": "text", "text": "Reply with exactly PONG."}]}
    exec_in(api, "curl", "-s", "-X", "POST", "http://localhost:8000/agent/message",
            "-H", "Content-Type: application/json", "-d", json.dumps(message))
    execute = exec_in(api, "curl", "-s", "-X", "POST", "http://localhost:8000/agent/execute",
                      "-H", "Content-Type: application/json",
                      "-d", json.dumps({"thread_key": THREAD_KEY, "assignment_generation": generation,
                                        "delivery": {"platform": "dev"}})).stdout
    execution_id = json.loads(execute)["execution_id"]

    def finished():
        row = json.loads(exec_in(api, "curl", "-s", f"http://localhost:8000/agent/executions/{execution_id}").stdout)
        return row if row["status"] not in ("queued", "running") else None

    row = wait_until(finished, 90, what=f"execution {execution_id} finishing\n{logs(api)}")
    assert row["status"] == "completed", json.dumps(row, indent=1)
    assert "PONG" in json.dumps(row), row

    # The operator's CLI works in the same container with no setup (local operator).
    got = exec_in(api, "centaur", "executions", "get", execution_id, "--json")
    assert json.loads(got.stdout)["status"] == "completed", got.stdout
    # And with the admin key the guide had us create, as an external operator would call.
    keyed = exec_in(api, "curl", "-fsS", "http://localhost:8000/health/tools", "-H", f"X-Api-Key: {admin_key}")
    assert keyed.returncode == 0


def test_every_function_binary_serves_http_in_the_image(stack):
    """Each single-purpose function binary starts in the image and answers HTTP on $PORT."""
    functions = [name for name in readme_binaries() if name not in ("api", "dispatcher", "centaur", "sandbox")]
    script = r'''
port=8100
for bin in "$@"; do
  port=$((port + 1))
  PORT=$port "$bin" >"/tmp/$bin.log" 2>&1 &
  pid=$!
  code=000
  for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$port/health") && [ "$code" != 000 ] && break
    code=000
    sleep 0.1
  done
  kill "$pid" 2>/dev/null
  echo "$bin $code"
  [ "$code" = 000 ] && tail -n 5 "/tmp/$bin.log"
done
exit 0
'''
    out = exec_in(stack, "sh", "-c", script, "sh", *functions).stdout
    answered = dict(line.split() for line in out.splitlines() if line.split()[0] in functions and len(line.split()) == 2)
    silent = [name for name in functions if answered.get(name, "000") == "000"]
    assert silent == [], out
