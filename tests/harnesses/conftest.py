"""Fixtures of the harness conformance tests: the real CLIs (installed from npm by
scripts/test.sh into tests/harnesses/node_modules), the `sandbox` binary, and scripted
fake model servers on localhost."""
import json
import os
import pathlib
import subprocess
import time

import pytest

from fake_models import FakeModelServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI_BIN = pathlib.Path(__file__).resolve().parent / "node_modules" / ".bin"
SANDBOX = ROOT / "target" / "debug" / "sandbox"
PLACEHOLDER_ENV = {
    "OPENAI_API_KEY": "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY",
    "AMP_API_KEY": "AMP_API_KEY",
    "GITHUB_TOKEN": "GITHUB_TOKEN",
}


@pytest.fixture(scope="session", autouse=True)
def built():
    subprocess.run(["cargo", "build", "-q", "--workspace", "--bins"], cwd=ROOT, check=True)
    assert (CLI_BIN / "codex").exists(), "run: npm ci --prefix tests/harnesses (scripts/test.sh does)"


@pytest.fixture
def openai():
    server = FakeModelServer("openai")
    yield server
    server.close()


@pytest.fixture
def anthropic():
    server = FakeModelServer("anthropic")
    yield server
    server.close()


class Sandbox:
    """One `sandbox --harness <h>` process, spoken to over its stdin/stdout protocol."""

    def __init__(self, harness, home, extra_env):
        env = {"PATH": f"{CLI_BIN}:{os.environ['PATH']}", "HOME": str(home), **PLACEHOLDER_ENV, **extra_env}
        work = home / "work"
        work.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [str(SANDBOX), "--harness", harness], cwd=work, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def turn(self, execution_id, text, agent_thread_id=None, timeout=120):
        line = {"type": "user", "thread_key": "conformance", "execution_id": execution_id,
                "message": {"role": "user", "content": [{"type": "text", "text": text}]}}
        if agent_thread_id:
            line["agent_thread_id"] = agent_thread_id
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
def sandbox(tmp_path):
    started = []

    def start(harness, extra_env=None):
        box = Sandbox(harness, tmp_path, extra_env or {})
        started.append(box)
        return box

    yield start
    for box in started:
        box.close()


def codex_env(home, server):
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model_provider = "fake"\n'
        "[model_providers.fake]\n"
        'name = "fake"\n'
        f'base_url = "{server.url}/v1"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    return {"CODEX_HOME": str(codex_home)}


def claude_env(home, server):
    return {"ANTHROPIC_BASE_URL": server.url, "IS_SANDBOX": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def pi_env(home, server):
    agent = home / ".pi" / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    (agent / "models.json").write_text(json.dumps({"providers": {"anthropic": {"baseUrl": server.url}}}))
    return {"PI_OFFLINE": "1"}


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]
