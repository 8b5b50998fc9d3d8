"""The centaur-agent image as a pod runs it: `sandbox` as uid 1001 with the pod's environment
(placeholders only, HTTPS_PROXY = the test egress proxy, the proxy CA mounted read-only at
/firewall-certs), a real turn per model harness through the proxy to the fake model servers,
the `echo` harness with no network at all, and no secret anywhere in the image."""
import json

import pytest

from image_support import (AGENT_IMAGE, CA_FILE, SANDBOX_UID, SandboxContainer, image_config, of_type,
                           pod_env, podman)

MODEL = {"codex": "openai", "claude-code": "anthropic", "pi-mono": "anthropic"}


def assert_ok(events, text):
    done = of_type(events, "turn.done")
    assert len(done) == 1 and done[0]["status"] == "ok", events
    assert of_type(events, "error") == [], events
    assert done[0]["result_text"] == text, done
    return done[0]


def test_the_image_runs_as_uid_1001_not_root():
    config = image_config(AGENT_IMAGE)["Config"]
    assert config.get("User") == f"{SANDBOX_UID}:{SANDBOX_UID}", config.get("User")
    ids = podman("run", "--rm", "--network", "none", "--entrypoint", "id", AGENT_IMAGE).stdout.strip()
    assert ids.startswith(f"uid={SANDBOX_UID}(agent) gid={SANDBOX_UID}(agent)"), ids
    # The CLIs, the sandbox program and HOME are where the pod expects them.
    listing = podman("run", "--rm", "--network", "none", "--entrypoint", "sh", AGENT_IMAGE, "-c",
                     "for p in sandbox codex claude pi amp node git; do command -v $p; done; "
                     "echo HOME=$HOME; test -w /home/agent && echo writable").stdout
    for program in ("sandbox", "codex", "claude", "pi", "amp", "node", "git"):
        assert f"/{program}\n" in listing, listing
    assert "HOME=/home/agent" in listing and "writable" in listing, listing


def test_echo_runs_with_no_network_at_all(tmp_path):
    box = SandboxContainer("echo", pod_env("http://127.0.0.1:9"), network="none")
    try:
        events = box.turn("exe_echo", "hello from a container with no network", timeout=60)
    finally:
        box.close()
    done = assert_ok(events, "hello from a container with no network")
    assert done["agent_thread_id"], done


@pytest.mark.parametrize("harness", list(MODEL))
def test_a_turn_goes_through_the_egress_proxy_to_the_model_with_the_real_key(harness, models, proxy, ca_dir,
                                                                          prompts_dir, real_keys):
    server = models[MODEL[harness]]
    box = SandboxContainer(harness, pod_env(proxy.url), ca_dir=ca_dir, prompts_dir=prompts_dir)
    try:
        events = box.turn(f"exe_{harness}", "Reply with exactly PONG.")
    finally:
        box.close()
    done = assert_ok(events, "PONG")
    assert done["agent_thread_id"], "the harness's own session id is recorded"
    started = of_type(events, "turn.started")[0]
    assert started["cli_present"] is True and started["cli_version"], started
    # Every model request reached the fake with the real key, swapped in by the proxy; the
    # placeholder never left the proxy.
    assert server.script.requests, "no model request arrived"
    assert server.script.violations == [], server.script.violations
    assert {r["credential"] for r in server.script.requests} == {server.expected}
    assert not server.placeholder_seen()
    assert "BASE-PROMPT-MARK" in str(server.script.requests[-1]["body"]), "the mounted base prompt reached the model"


def test_without_the_ca_mount_a_model_turn_fails_at_once_naming_the_ca_file(models, proxy, prompts_dir):
    """The image's CA variables point at /firewall-certs/ca.crt: with nothing mounted there the
    sandbox says so at the start of the turn instead of a harness failing obscurely later."""
    box = SandboxContainer("codex", pod_env(proxy.url), prompts_dir=prompts_dir)
    try:
        events = box.turn("exe_no_ca", "Reply with exactly PONG.", timeout=60)
    finally:
        box.close()
    done = of_type(events, "turn.done")[0]
    assert done["status"] == "error", events
    errors = of_type(events, "error")
    assert errors and errors[0]["kind"] == "start_failed", events
    assert "reach api.openai.com through the egress proxy" in errors[0]["message"], errors
    assert CA_FILE in errors[0]["message"], errors
    assert models["openai"].script.requests == []


def test_the_pod_environment_carries_only_placeholders(proxy, real_keys):
    env = pod_env(proxy.url)
    leaked = [name for name, value in env.items() if any(key in value for key in real_keys.values())]
    assert leaked == []
    config = image_config(AGENT_IMAGE)["Config"]
    image_env = dict(item.split("=", 1) for item in config.get("Env", []))
    for name in ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO"):
        assert image_env.get(name) == CA_FILE, image_env
    assert not any(name in image_env for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AMP_API_KEY",
                                                  "GITHUB_TOKEN")), image_env
    assert json.dumps(config.get("Entrypoint")) == '["sandbox"]'
