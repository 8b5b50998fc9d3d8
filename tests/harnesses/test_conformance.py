"""The real harness CLIs driven by the `sandbox` program against scripted fake model
servers: a plain answer, a tool call, a resumed second turn and an upstream error per
harness that can be pointed at a local endpoint; the fake asserts it received only the
placeholder credential. Amp's CLI talks only to the Amp service, so it is covered by
recorded transcripts (sandbox unit tests) and by its failure path here."""
import pytest

from conftest import PLACEHOLDER_ENV, claude_env, codex_env, of_type, pi_env

LOCAL = {
    "codex": ("openai", codex_env),
    "claude-code": ("anthropic", claude_env),
    "pi-mono": ("anthropic", pi_env),
}


def start(harness, request, sandbox, tmp_path):
    kind, env = LOCAL[harness]
    server = request.getfixturevalue(kind)
    return server, sandbox(harness, env(tmp_path, server))


def placeholder_only(server):
    expected = "Bearer OPENAI_API_KEY" if server.kind == "openai" else "ANTHROPIC_API_KEY"
    assert server.credentials_seen() == {expected}, server.credentials_seen()


@pytest.mark.parametrize("harness", LOCAL)
def test_a_plain_answer_ends_the_turn_once_with_the_result_and_session_id(harness, request, sandbox, tmp_path):
    server, box = start(harness, request, sandbox, tmp_path)
    server.script.answer = "PONG"
    events = box.turn("exe_plain", "Reply with exactly PONG.")
    done = of_type(events, "turn.done")
    assert len(done) == 1, events
    assert done[0]["status"] == "ok", events
    assert done[0]["result_text"] == "PONG"
    assert done[0]["agent_thread_id"], "the harness's own session id is recorded"
    assert of_type(events, "assistant.message")[-1]["text"] == "PONG"
    started = of_type(events, "turn.started")[0]
    assert started["cli_present"] is True and started["cli_version"], started
    placeholder_only(server)


def test_a_codex_tool_call_runs_the_command_and_reports_it(request, sandbox, tmp_path):
    server, box = start("codex", request, sandbox, tmp_path)
    server.script.mode = "tool"
    server.script.answer = "ran it"
    events = box.turn("exe_tool", "Run the command.")
    commands = of_type(events, "command")
    assert commands and "echo centaur-tool-ran" in commands[0]["command"], events
    assert commands[0]["exit_code"] == 0 and "centaur-tool-ran" in commands[0]["output"]
    assert of_type(events, "turn.done")[0]["result_text"] == "ran it"
    outputs = [i for i in server.script.requests[-1]["body"]["input"] if i.get("type") == "custom_tool_call_output"]
    assert "centaur-tool-ran" in str(outputs), "the tool result went back to the model"
    placeholder_only(server)


@pytest.mark.parametrize("harness", ["claude-code", "pi-mono"])
def test_a_tool_call_turn_reports_the_call_and_its_result(harness, request, sandbox, tmp_path):
    server, box = start(harness, request, sandbox, tmp_path)
    server.script.mode = "tool"
    server.script.answer = "ran it"
    events = box.turn("exe_tool", "Run the command.")
    calls = of_type(events, "tool.call")
    results = of_type(events, "tool.result")
    assert calls and calls[0]["name"].lower() == "bash", events
    assert calls[0]["input"]["command"] == "echo centaur-tool-ran"
    assert results and "centaur-tool-ran" in str(results[0]["output"]), events
    assert of_type(events, "turn.done")[0]["result_text"] == "ran it"
    placeholder_only(server)


@pytest.mark.parametrize("harness", LOCAL)
def test_a_second_turn_resumes_the_harness_session(harness, request, sandbox, tmp_path):
    server, box = start(harness, request, sandbox, tmp_path)
    first = of_type(box.turn("exe_first", "Remember the word OTTER."), "turn.done")[0]
    server.script.answer = "OTTER"
    second = of_type(box.turn("exe_second", "Which word?", agent_thread_id=first["agent_thread_id"]), "turn.done")[0]
    assert second["status"] == "ok", second
    assert second["agent_thread_id"] == first["agent_thread_id"], "the same session continues"
    history = server.script.requests[-1]["body"]
    transcript = str(history.get("messages") or history.get("input"))
    assert "OTTER" in transcript and "Remember the word" in transcript, "the resumed call carries the first turn"


@pytest.mark.parametrize("harness", LOCAL)
def test_an_upstream_error_is_an_error_event_and_a_failed_turn(harness, request, sandbox, tmp_path):
    server, box = start(harness, request, sandbox, tmp_path)
    server.script.mode = "error"
    events = box.turn("exe_error", "Reply with PONG.", timeout=180)
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "error", events
    errors = of_type(events, "error")
    assert errors, events
    assert errors[-1]["kind"] in ("upstream", "harness"), errors


def test_amp_without_its_service_fails_the_turn_instead_of_hanging(sandbox, tmp_path):
    box = sandbox("amp", {"AMP_URL": "http://127.0.0.1:9"})
    events = box.turn("exe_amp", "Reply with PONG.", timeout=180)
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "error", events
    assert of_type(events, "error"), events


def test_a_missing_cli_is_reported_as_cli_missing(sandbox, tmp_path):
    box = sandbox("codex", {"PATH": "/usr/bin:/bin"})
    events = box.turn("exe_missing", "hello")
    errors = of_type(events, "error")
    assert errors and errors[0]["kind"] == "cli_missing", events
    assert of_type(events, "turn.started")[0]["cli_present"] is False
    assert of_type(events, "turn.done")[0]["status"] == "error"


def test_the_sandbox_env_carries_only_placeholders():
    assert all(name == value for name, value in PLACEHOLDER_ENV.items())
