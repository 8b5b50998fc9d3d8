"""schemathesis against a live `api`: every operation of `GET /openapi.json` is called with
generated requests (valid and invalid), bounded in examples and time, and every answer must
be no server error and conform to the document: a documented status, content type, headers
and body schema. Auth is checked too: an operation that names a scheme must refuse a request
without a credential.

The api runs as a real process on a fresh database migrated with `api migrate`, with a
LOCAL_DEV_API_KEY (admin + agent) that is the credential schemathesis sends, the local
operator turned off (a loopback request without a key must be refused, as the document says)
and a Slack signing secret (so the webhook answers 401 to unsigned requests, not 503).

Knobs: OPENAPI_FUZZ_EXAMPLES (examples per operation, default 25) and
OPENAPI_FUZZ_BUDGET_S (the whole run's time budget, default 150 s; operations left when it
runs out are skipped, and say so).
"""
import os
import pathlib
import secrets
import socket
import subprocess
import time
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "25"))
BUDGET_S = float(os.environ.get("OPENAPI_FUZZ_BUDGET_S", "150"))

# What every answer is checked for: no 5xx, and conformance to the document.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]


# The one streaming operation: its 200 is an open text/event-stream, read for this long.
EVENTS = ("GET", "/agent/threads/{thread_key}/events")
STREAM_READ_S = 1.0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_binary():
    binary = TARGET / "debug" / "api"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "api"], cwd=ROOT, check=True)
    return binary


@pytest.fixture(scope="module")
def live_api():
    """A live api on a fresh, migrated database; yields (base URL, admin+agent key)."""
    name = f"centaur_openapi_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", SERVER, "-qc", f"CREATE DATABASE {name}"], check=True)
    database = SERVER.rsplit("/", 1)[0] + "/" + name
    key = "cnt_" + secrets.token_urlsafe(32)[:43]
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database,
        "SANDBOX_SIGNING_KEY": secrets.token_hex(32),
        "LOCAL_DEV_API_KEY": key,
        "LOCAL_OPERATOR": "off",
        "SLACK_SIGNING_SECRET": secrets.token_hex(16),
        "PORT": str(port),
        "RUST_LOG": "warn",
    }
    binary = api_binary()
    migrated = subprocess.run([str(binary), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    log = open(TARGET / f"{name}.log", "w")
    process = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"api exited: {(TARGET / f'{name}.log').read_text()[-2000:]}"
            try:
                if requests.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "api not ready within 60 s"
            time.sleep(0.2)
        yield base, key
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        server_errors = [line for line in (TARGET / f"{name}.log").read_text().splitlines() if "panicked" in line]
        subprocess.run(["psql", SERVER, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)
        assert not server_errors, server_errors


def call_and_check(case, headers):
    """One generated request, checked against the document. An event stream is read until
    the request timeout (schemathesis keeps what arrived and checks it like any body)."""
    streaming = (case.operation.method.upper(), case.operation.path) == EVENTS
    response = case.call(headers=headers, timeout=STREAM_READ_S if streaming else 10)
    case.validate_response(response, checks=CHECKS, headers=headers)


def test_every_operation_answers_as_documented(live_api):
    base, key = live_api
    headers = {"X-Api-Key": key}
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]
    # The budget counts from here: the suites that ran before this one are not its time.
    started = time.monotonic()
    strategy_modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    failures, skipped, calls = {}, [], 0
    for operation in operations:
        if time.monotonic() - started > BUDGET_S:
            skipped.append(operation.label)
            continue
        strategy = st.one_of([operation.as_strategy(generation_mode=mode) for mode in strategy_modes])

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def run(case):
            nonlocal calls
            calls += 1
            call_and_check(case, headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - run all, report all
            failures[operation.label] = str(failure)[:3000]
    print(f"\nschemathesis: {len(operations)} operations, {calls} generated requests, "
          f"{time.monotonic() - started:.0f} s, {len(failures)} failing, {len(skipped)} skipped for time")
    assert not skipped, f"time budget of {BUDGET_S:.0f} s ran out before: {skipped}"
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
