"""The real harness CLIs driven by the `sandbox` program the way a pod runs them: placeholders
only, every connection through the egress proxy (real mitmdump + Centaur's addon, holding the
real keys), the proxy's CA in the four CA variables, and the CLIs' default provider settings.
The proxy routes api.openai.com / api.anthropic.com / ampcode.com / github.com to scripted
fakes, which accept only the real key (a placeholder is answered 401 and recorded).

For codex, claude-code and pi-mono: a plain answer, a tool call, a resumed second turn, an
upstream 500, and the system prompt's three parts in the model request. Amp: its requests go
through the proxy with the real key, and an allowlist refusal is a quick start failure.
Start failures: proxy down, CA untrusted, a clone that cannot work. The workspace: codex
commits and pushes its branch to the Git server through the proxy."""
import socket
import subprocess
import time

import pytest

from conftest import BINDINGS, PLACEHOLDER_ENV, Sandbox, of_type, pod_env, start_proxy, workspace

MODEL_HARNESSES = {"codex": "openai", "claude-code": "anthropic", "pi-mono": "anthropic"}


def model(upstreams, harness):
    return getattr(upstreams, MODEL_HARNESSES[harness])


def only_the_real_key(server):
    """Every model request carried the real key; the placeholder never arrived."""
    assert server.script.requests, "no model request arrived"
    assert server.script.violations == [], server.script.violations
    assert {r["credential"] for r in server.script.requests} == {server.expected}
    assert not server.placeholder_seen()


def assert_ok(events, text=None):
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "ok", events
    assert of_type(events, "error") == [], "a successful turn carries no error events"
    if text is not None:
        assert done[0]["result_text"] == text, done
    return done[0]


def start_failure(events):
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "error", events
    errors = of_type(events, "error")
    assert errors and errors[0]["kind"] == "start_failed", events
    assert errors[0]["message"] == done[0]["error"], (errors, done)
    return done[0]["error"]


@pytest.mark.parametrize("harness", MODEL_HARNESSES)
def test_a_plain_answer_goes_through_the_proxy_with_the_real_key(harness, upstreams, sandbox):
    server = model(upstreams, harness)
    box = sandbox(harness)
    events = box.turn("exe_plain", "Reply with exactly PONG.")
    done = assert_ok(events, "PONG")
    assert done["agent_thread_id"], "the harness's own session id is recorded"
    assert of_type(events, "assistant.message")[-1]["text"] == "PONG"
    started = of_type(events, "turn.started")[0]
    assert started["cli_present"] is True and started["cli_version"], started
    only_the_real_key(server)
    if harness == "codex":
        assert {r["transport"] for r in server.script.requests} == {"websocket"}, "codex speaks WebSocket first"


def test_codex_falls_back_to_https_without_websocket_and_the_turn_shows_no_errors(upstreams, sandbox):
    upstreams.openai.script.websocket = False
    box = sandbox("codex")
    events = box.turn("exe_fallback", "Reply with exactly PONG.")
    assert_ok(events, "PONG")
    assert upstreams.openai.script.websocket_upgrades >= 1
    assert {r["transport"] for r in upstreams.openai.script.requests} == {"https"}
    only_the_real_key(upstreams.openai)


@pytest.mark.parametrize("harness", MODEL_HARNESSES)
def test_the_system_prompt_reaches_the_model_with_all_three_parts(harness, upstreams, sandbox):
    upstreams.git.create_repo(f"acme/prompt-{harness}", {"AGENTS.md": "REPO-AGENTS-MARK: run cargo test.\n"})
    server = model(upstreams, harness)
    box = sandbox(harness)
    events = box.turn("exe_prompt", "Reply with exactly PONG.", workspace=workspace(f"acme/prompt-{harness}", "centaur/p1-1"),
                      instructions="THREAD-INSTRUCTIONS-MARK: answer in French.")
    assert_ok(events, "PONG")
    request = str(server.script.requests[-1]["body"])
    for part in ("BASE-PROMPT-MARK", "REPO-AGENTS-MARK", "THREAD-INSTRUCTIONS-MARK"):
        assert part in request, f"{part} is not in {harness}'s model request"
    checkout = box.home / "workspace"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=checkout, capture_output=True, text=True, check=True)
    assert status.stdout == "", "handing over the prompt leaves the repository's status clean"


def test_a_codex_tool_call_runs_the_command_and_reports_it(upstreams, sandbox):
    upstreams.openai.script.mode = "tool"
    upstreams.openai.script.answer = "ran it"
    box = sandbox("codex")
    events = box.turn("exe_tool", "Run the command.")
    commands = of_type(events, "command")
    assert commands and "echo centaur-tool-ran" in commands[0]["command"], events
    assert commands[0]["exit_code"] == 0 and "centaur-tool-ran" in commands[0]["output"]
    assert_ok(events, "ran it")
    outputs = [i for r in upstreams.openai.script.requests for i in r["body"].get("input", [])
               if i.get("type") == "custom_tool_call_output"]
    assert "centaur-tool-ran" in str(outputs), "the tool result went back to the model"
    only_the_real_key(upstreams.openai)


@pytest.mark.parametrize("harness", ["claude-code", "pi-mono"])
def test_a_tool_call_turn_reports_the_call_and_its_result(harness, upstreams, sandbox):
    server = model(upstreams, harness)
    server.script.mode = "tool"
    server.script.answer = "ran it"
    box = sandbox(harness)
    events = box.turn("exe_tool", "Run the command.")
    calls = of_type(events, "tool.call")
    results = of_type(events, "tool.result")
    assert calls and calls[0]["name"].lower() == "bash", events
    assert calls[0]["input"]["command"] == "echo centaur-tool-ran"
    assert results and "centaur-tool-ran" in str(results[0]["output"]), events
    assert_ok(events, "ran it")
    only_the_real_key(server)


@pytest.mark.parametrize("harness", MODEL_HARNESSES)
def test_a_second_turn_resumes_the_harness_session(harness, upstreams, sandbox):
    server = model(upstreams, harness)
    box = sandbox(harness)
    first_events = box.turn("exe_first", "Remember the word OTTER.")
    first = assert_ok(first_events)
    server.script.answer = "OTTER"
    second_events = box.turn("exe_second", "Which word?", agent_thread_id=first["agent_thread_id"])
    second = assert_ok(second_events, "OTTER")
    assert second["agent_thread_id"] == first["agent_thread_id"], "the same session continues"
    history = server.script.requests[-1]["body"]
    transcript = str(history.get("messages") or history.get("input"))
    assert "Remember the word OTTER" in transcript, "the resumed call carries the first turn"
    usage = of_type(second_events, "usage")
    assert usage and usage[-1]["input_tokens"] == of_type(first_events, "usage")[-1]["input_tokens"], \
        "usage is per turn, not cumulative for the thread"
    only_the_real_key(server)


@pytest.mark.parametrize("harness", MODEL_HARNESSES)
def test_an_upstream_500_is_an_error_event_and_a_failed_turn(harness, upstreams, sandbox):
    server = model(upstreams, harness)
    server.script.mode = "error"
    box = sandbox(harness)
    events = box.turn("exe_error", "Reply with PONG.", timeout=180)
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "error", events
    errors = of_type(events, "error")
    assert errors, events
    assert errors[-1]["kind"] in ("upstream", "harness"), errors
    assert server.script.violations == [] and not server.placeholder_seen()


def test_amp_requests_go_through_the_proxy_with_the_real_key(upstreams, sandbox, real_keys):
    box = sandbox("amp")
    started = time.monotonic()
    events = box.turn("exe_amp", "Reply with PONG.", timeout=60)
    assert time.monotonic() - started < 30
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "error", events
    assert of_type(events, "error"), events
    requests = upstreams.amp.wait_for(1)
    authorizations = {value for r in requests for value in r.header("Authorization")}
    assert authorizations == {f"Bearer {real_keys['AMP_API_KEY']}"}, authorizations
    assert not any(b"AMP_API_KEY" in r.raw() for r in requests)


def test_amp_refused_by_the_allowlist_is_a_quick_start_failure(real_keys, upstreams, tmp_path):
    bindings = [b for b in BINDINGS if b[1] != "ampcode.com"]
    with start_proxy(real_keys, upstreams, bindings) as refusing:
        box = Sandbox("amp", pod_env(refusing.url, refusing.ca_file, tmp_path, tmp_path), tmp_path)
        try:
            started = time.monotonic()
            events = box.turn("exe_amp_refused", "Reply with PONG.", timeout=60)
            assert time.monotonic() - started < 15
        finally:
            box.close()
    message = start_failure(events)
    assert message.startswith(f"reach ampcode.com through the egress proxy {refusing.url}: "), message
    assert "the egress proxy refused the connection" in message and "403" in message, message
    assert upstreams.amp.requests == []


MODEL_HOSTS = {"codex": "api.openai.com", "claude-code": "api.anthropic.com", "pi-mono": "api.anthropic.com"}


@pytest.mark.parametrize("harness", MODEL_HARNESSES)
def test_a_proxy_that_is_down_fails_the_turn_at_once_naming_it(harness, sandbox, upstreams):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    box = sandbox(harness, proxy_url=dead)
    started = time.monotonic()
    events = box.turn("exe_down", "Reply with PONG.", timeout=30)
    assert time.monotonic() - started < 15
    message = start_failure(events)
    expected = f"reach {MODEL_HOSTS[harness]} through the egress proxy {dead}: the egress proxy is not reachable"
    assert message.startswith(expected), message
    assert model(upstreams, harness).script.requests == []


@pytest.mark.parametrize("harness", MODEL_HARNESSES)
def test_an_untrusted_proxy_ca_fails_the_turn_at_once_naming_it(harness, sandbox, upstreams, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "other-ca.key"),
                    "-out", str(other_ca), "-days", "1", "-subj", "/CN=not the proxy"], check=True, capture_output=True)
    box = sandbox(harness, ca_file=other_ca)
    started = time.monotonic()
    events = box.turn("exe_ca", "Reply with PONG.", timeout=30)
    assert time.monotonic() - started < 15
    message = start_failure(events)
    assert message.startswith(f"reach {MODEL_HOSTS[harness]} through the egress proxy"), message
    assert f"TLS: the proxy's certificate is not trusted (SSL_CERT_FILE={other_ca})" in message, message
    assert model(upstreams, harness).script.requests == []


def test_codex_commits_and_pushes_its_branch_through_the_proxy_and_reuses_the_checkout(upstreams, sandbox):
    git = upstreams.git
    git.create_repo("acme/widgets", {"AGENTS.md": "Keep commits small.\n", "README.md": "# widgets\n"})
    ws = workspace("acme/widgets", "centaur/t1-1")
    upstreams.openai.script.mode = "tool"
    upstreams.openai.script.tool_command = "echo hi > NOTE.md && git add NOTE.md && git commit -q -m note && git push -q -u origin HEAD"
    upstreams.openai.script.answer = "pushed"
    box = sandbox("codex")
    events = box.turn("exe_push", "Write a note and push it.", workspace=ws)
    assert_ok(events, "pushed")
    command = of_type(events, "command")[0]
    assert command["exit_code"] == 0, command
    refs = git.refs("acme/widgets")
    assert "refs/heads/centaur/t1-1" in refs, refs
    assert git.show("acme/widgets", "centaur/t1-1", "NOTE.md") == "hi\n"
    assert refs["refs/heads/centaur/t1-1"] != refs["refs/heads/main"]
    pushes = [r for r in git.requests if "git-receive-pack" in r["path"] and r["had_credentials"]]
    assert pushes and all(r["authorized"] for r in pushes), git.requests
    assert not any(r["placeholder_seen"] for r in git.requests)

    clones_before = len(git.requests)
    upstreams.openai.script.mode = "text"
    upstreams.openai.script.answer = "again"
    thread = of_type(events, "turn.done")[0]["agent_thread_id"]
    second = box.turn("exe_push_2", "Anything else?", agent_thread_id=thread, workspace=ws)
    assert_ok(second, "again")
    assert len(git.requests) == clones_before, "the second turn reuses the checkout: no second clone"


def test_a_repository_that_does_not_exist_ends_the_turn_as_a_clone_failure(upstreams, sandbox):
    box = sandbox("codex")
    started = time.monotonic()
    events = box.turn("exe_missing_repo", "hello", workspace=workspace("acme/missing", "centaur/t2-1"), timeout=60)
    assert time.monotonic() - started < 30
    message = start_failure(events)
    assert message.startswith("clone acme/missing: "), message
    assert "not found" in message.lower() or "404" in message, message
    assert upstreams.openai.script.requests == []


def test_a_refused_token_ends_the_turn_as_a_clone_failure(real_keys, upstreams, sandbox):
    upstreams.git.create_repo("acme/locked", {"README.md": "x\n"})
    with start_proxy(dict(real_keys, GITHUB_TOKEN="ghs_not_the_real_one"), upstreams) as wrong_token:
        box = sandbox("codex", proxy_url=wrong_token.url, ca_file=wrong_token.ca_file)
        started = time.monotonic()
        events = box.turn("exe_refused", "hello", workspace=workspace("acme/locked", "centaur/t3-1"), timeout=60)
        assert time.monotonic() - started < 30
    message = start_failure(events)
    assert message.startswith("clone acme/locked: "), message
    assert "Authentication failed" in message, message
    assert not any(r["authorized"] for r in upstreams.git.requests)


def test_a_missing_cli_is_reported_as_cli_missing(sandbox):
    box = sandbox("codex", extra_env={"PATH": "/usr/bin:/bin"})
    events = box.turn("exe_missing", "hello")
    errors = of_type(events, "error")
    assert errors and errors[0]["kind"] == "cli_missing", events
    assert of_type(events, "turn.started")[0]["cli_present"] is False
    assert of_type(events, "turn.done")[0]["status"] == "error"


def test_the_sandbox_env_carries_only_placeholders(real_keys, sandbox):
    box = sandbox("codex")
    assert all(name == value for name, value in PLACEHOLDER_ENV.items())
    leaked = [name for name, value in box.env.items() if any(key in value for key in real_keys.values())]
    assert leaked == []
