"""Fixtures of the harness conformance tests: the real CLIs (installed from npm by
scripts/test.sh into tests/harnesses/node_modules), the `sandbox` binary, the egress proxy
(real mitmdump with Centaur's addon, tests/support/egress.py) holding the real keys and
routing the real hostnames to scripted fakes, and a Git smart-HTTP server routed as
github.com.

A sandbox here gets exactly what the pod spec gives it (shared/kubernetes/src/pod.rs `env`):
placeholders only, HTTP(S)_PROXY (and lowercase), NO_PROXY, the four CA variables, HOME and
CENTAUR_PROMPTS_DIR, plus PATH. The CLIs run with their default provider settings."""
import json
import os
import pathlib
import secrets
import subprocess
import time

import pytest

from egress import EgressProxy, proxy_yaml
from fake_models import FakeModelServer
from fake_upstream import RecordingServer
from git_server import GitServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI_BIN = pathlib.Path(__file__).resolve().parent / "node_modules" / ".bin"
SANDBOX = ROOT / "target" / "debug" / "sandbox"
PLACEHOLDER_ENV = {
    "OPENAI_API_KEY": "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY",
    "AMP_API_KEY": "AMP_API_KEY",
    "GITHUB_TOKEN": "GITHUB_TOKEN",
}
CA_VARIABLES = ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO")
BASE_PROMPT = "BASE-PROMPT-MARK: you work in a Centaur sandbox.\n"
BINDINGS = [
    ("OPENAI_API_KEY", "api.openai.com", "Authorization"),
    ("ANTHROPIC_API_KEY", "api.anthropic.com", "X-Api-Key"),
    ("AMP_API_KEY", "ampcode.com", "Authorization"),
    ("GITHUB_TOKEN", ["github.com", "api.github.com"], "Authorization"),
]


@pytest.fixture(scope="session", autouse=True)
def built():
    # The same build as scripts/test.sh (a no-op there): building one package alone would
    # resolve features differently and rebuild its dependencies.
    subprocess.run(["cargo", "build", "-q", "--workspace", "--bins"], cwd=ROOT, check=True)
    assert (CLI_BIN / "codex").exists(), "run: npm install --prefix tests/harnesses (scripts/test.sh does)"


@pytest.fixture(scope="session")
def real_keys():
    """The real secrets: only the proxy's environment ever holds them."""
    return {
        "OPENAI_API_KEY": "sk-test-real-openai-" + secrets.token_hex(8),
        "ANTHROPIC_API_KEY": "sk-ant-test-real-" + secrets.token_hex(8),
        "AMP_API_KEY": "sgamp-test-real-" + secrets.token_hex(8),
        "GITHUB_TOKEN": "ghs_test_real_" + secrets.token_hex(8),
    }


class Upstreams:
    """The fakes behind the proxy, shared by a session and reset before each test."""

    def __init__(self, keys):
        self.openai = FakeModelServer("openai", keys["OPENAI_API_KEY"])
        self.anthropic = FakeModelServer("anthropic", keys["ANTHROPIC_API_KEY"])
        self.amp = RecordingServer(status=401, body={"error": {"message": "fake Amp service: no such account"}})
        self.git = GitServer(token=keys["GITHUB_TOKEN"])

    def routes(self):
        return {"api.openai.com": self.openai.address, "api.anthropic.com": self.anthropic.address,
                "ampcode.com": self.amp.address, "github.com": self.git.address}

    def reset(self):
        self.openai.reset()
        self.anthropic.reset()
        with self.amp.lock:
            self.amp.requests.clear()
        with self.git.lock:
            self.git.requests.clear()

    def close(self):
        for server in (self.openai, self.anthropic, self.amp, self.git):
            server.close()


@pytest.fixture(scope="session")
def session_upstreams(real_keys):
    upstreams = Upstreams(real_keys)
    yield upstreams
    upstreams.close()


@pytest.fixture
def upstreams(session_upstreams):
    session_upstreams.reset()
    return session_upstreams


def start_proxy(keys, upstreams, bindings=BINDINGS, extra_domains=()):
    return EgressProxy(proxy_yaml(bindings, extra_domains), env=keys, routes=upstreams.routes())


@pytest.fixture(scope="session")
def proxy(real_keys, session_upstreams):
    """The egress proxy of the session: allowlist and bindings as the chart renders them."""
    egress = start_proxy(real_keys, session_upstreams)
    yield egress
    egress.close()


def pod_env(proxy_url, ca_file, home, prompts_dir):
    """The sandbox container's environment as shared/kubernetes/src/pod.rs sets it."""
    env = {
        "PATH": f"{CLI_BIN}:{os.environ['PATH']}",
        "HOME": str(home),
        "CENTAUR_PROMPTS_DIR": str(prompts_dir),
        "NO_PROXY": "localhost,127.0.0.1",
        "no_proxy": "localhost,127.0.0.1",
        **PLACEHOLDER_ENV,
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy_url
    for name in CA_VARIABLES:
        env[name] = str(ca_file)
    return env


class Sandbox:
    """One `sandbox --harness <h>` process, spoken to over its stdin/stdout protocol."""

    def __init__(self, harness, env, cwd):
        self.env = env
        self.process = subprocess.Popen(
            [str(SANDBOX), "--harness", harness], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def turn(self, execution_id, text, agent_thread_id=None, workspace=None, instructions=None, timeout=120):
        line = {"type": "user", "thread_key": "conformance", "execution_id": execution_id,
                "message": {"role": "user", "content": [{"type": "text", "text": text}]}}
        if agent_thread_id:
            line["agent_thread_id"] = agent_thread_id
        if workspace:
            line["workspace"] = workspace
        if instructions:
            line["instructions"] = instructions
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
        raise AssertionError(f"no turn.done within {timeout}s: {events}")

    def close(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def sandbox(tmp_path, proxy):
    """Factory: sandbox(harness, proxy_url=None, ca_file=None, extra_env=None) -> a Sandbox
    with the pod's environment pointing at the session's proxy (or the given one)."""
    started = []
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "AGENTS_BASE.md").write_text(BASE_PROMPT)

    def start(harness, proxy_url=None, ca_file=None, extra_env=None):
        home = tmp_path / f"home-{len(started)}"
        home.mkdir()
        env = pod_env(proxy_url or proxy.url, ca_file or proxy.ca_file, home, prompts)
        env.update(extra_env or {})
        box = Sandbox(harness, env, home)
        box.home = home
        started.append(box)
        return box

    yield start
    for box in started:
        box.close()


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


def workspace(repo, branch):
    """The `workspace` of a turn line, as the dispatcher fills it for a GitHub repository."""
    return {"repo": repo, "clone_url": f"https://github.com/{repo}.git", "branch": branch}
