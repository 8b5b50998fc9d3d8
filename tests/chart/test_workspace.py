"""A thread's repository and the deployment's base prompt: sandbox.repo / sandbox.reposAllowed
reach the API and the dispatcher as AGENT_REPO / AGENT_REPOS_ALLOWED, iron-proxy binds
GITHUB_TOKEN on github.com and api.github.com once a repository is configured (in the exact
field shape of deployment.md), and sandbox.agentsBase is mounted into the dispatcher with
AGENTS_BASE_FILE pointing at it. The binaries' check-config accepts what the chart renders."""
import pathlib
import subprocess

import pytest

from helm_render import containers, render
from test_binaries_env import binaries, container_env  # noqa: F401  (fixture)
from test_iron_proxy import SOURCE_TYPES, proxy_config, transform

REPOS = {"sandbox": {"repo": "acme/api", "reposAllowed": ["acme/*", "https://git.example.com/team/*"]}}
GITHUB_HOSTS = {"github.com", "api.github.com"}


def env_of(manifests, component):
    (container,) = containers(manifests[f"Deployment/centaur-centaur-{component}"])
    return {e["name"]: e for e in container.get("env", [])}


def github_bindings(manifests):
    secrets = transform(proxy_config(manifests), "secrets")["secrets"]
    return [s for s in secrets if s["replace"]["proxy_value"] == "GITHUB_TOKEN"]


def test_by_default_no_repository_settings_no_github_binding_and_no_base_prompt(default_render):
    for component in ("api", "dispatcher"):
        env = env_of(default_render, component)
        assert not {"AGENT_REPO", "AGENT_REPOS_ALLOWED", "AGENTS_BASE_FILE"} & set(env), component
    assert github_bindings(default_render) == []
    assert not GITHUB_HOSTS & set(transform(proxy_config(default_render), "allowlist")["domains"])
    assert "ConfigMap/centaur-centaur-dispatcher-agents-base" not in default_render


def test_repo_values_reach_the_api_and_the_dispatcher():
    manifests = render(REPOS)
    for component in ("api", "dispatcher"):
        env = env_of(manifests, component)
        assert env["AGENT_REPO"]["value"] == "acme/api"
        assert env["AGENT_REPOS_ALLOWED"]["value"] == "acme/*,https://git.example.com/team/*"


@pytest.mark.parametrize("source", SOURCE_TYPES)
@pytest.mark.parametrize(
    "values",
    [{"repo": "acme/api"}, {"reposAllowed": ["acme/*"]}, REPOS["sandbox"]],
    ids=["repo", "reposAllowed", "both"],
)
def test_a_configured_repository_binds_github_token_in_iron_proxys_field_shape(source, values):
    manifests = render({"sandbox": values, "ironProxy": {"secretSource": source, "secretTtl": "15m"}})
    bindings = github_bindings(manifests)
    assert {rule["host"] for b in bindings for rule in b["rules"]} == GITHUB_HOSTS
    for binding in bindings:
        assert set(binding) == {"source", "replace", "rules"}, "no require:, no hosts:"
        assert binding["replace"] == {"proxy_value": "GITHUB_TOKEN", "match_headers": ["Authorization"]}
        assert [set(rule) for rule in binding["rules"]] == [{"host"}]
        assert binding["source"]["type"] == SOURCE_TYPES[source]
        if source == "env":
            # iron-proxy's env source reads type and var only.
            assert binding["source"] == {"type": "env", "var": "GITHUB_TOKEN"}
        else:
            assert binding["source"]["ttl"] == "15m", "a 1Password source without ttl is cached forever"
            assert binding["source"]["secret_ref"] == "op://${OP_VAULT}/GITHUB_TOKEN/credential"
    domains = transform(proxy_config(manifests), "allowlist")["domains"]
    assert GITHUB_HOSTS <= set(domains)
    assert len(domains) == len(set(domains))
    bound = env_of(manifests, "api")["IRON_PROXY_BOUND_SECRETS"]["value"].split(",")
    assert bound.count("GITHUB_TOKEN") == 1 and "OPENAI_API_KEY" in bound
    if source == "env":
        (proxy,) = containers(manifests["Deployment/centaur-centaur-iron-proxy"])[1:]
        names = [e["name"] for e in proxy["env"]]
        assert names.count("GITHUB_TOKEN") == 1, names
        (token,) = [e for e in proxy["env"] if e["name"] == "GITHUB_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"] == {"name": "centaur-infra-env", "key": "GITHUB_TOKEN"}


def test_model_bindings_are_unchanged_by_the_github_binding():
    manifests = render({**REPOS, "harnesses": {"enabled": ["codex", "claude-code", "pi-mono"]}})
    secrets = transform(proxy_config(manifests), "secrets")["secrets"]
    pairs = sorted((s["replace"]["proxy_value"], s["rules"][0]["host"]) for s in secrets)
    assert pairs == [
        ("ANTHROPIC_API_KEY", "api.anthropic.com"),
        ("GITHUB_TOKEN", "api.github.com"),
        ("GITHUB_TOKEN", "github.com"),
        ("OPENAI_API_KEY", "api.openai.com"),
    ]


def test_the_base_prompt_is_mounted_into_the_dispatcher_and_named_by_agents_base_file():
    text = "  # Our base prompt\nAnswer briefly; push to your branch.\n\tTabs & <tags> \"quotes\" \u00e9\n"
    manifests = render({"sandbox": {"agentsBase": text}})
    config_map = manifests["ConfigMap/centaur-centaur-dispatcher-agents-base"]
    assert config_map["metadata"]["namespace"] == "centaur-system"
    assert config_map["data"] == {"AGENTS_BASE.md": text}
    dispatcher = manifests["Deployment/centaur-centaur-dispatcher"]
    spec = dispatcher["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    path = pathlib.PurePosixPath(env_of(manifests, "dispatcher")["AGENTS_BASE_FILE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "agents-base"]
    assert mount["readOnly"] is True
    assert path.parent == pathlib.PurePosixPath(mount["mountPath"]) and path.name == "AGENTS_BASE.md"
    (volume,) = [v for v in spec["volumes"] if v["name"] == "agents-base"]
    assert volume["configMap"]["name"] == "centaur-centaur-dispatcher-agents-base"
    assert "checksum/agents-base" in dispatcher["spec"]["template"]["metadata"]["annotations"]
    assert "AGENTS_BASE_FILE" not in env_of(manifests, "api"), "only the dispatcher reads it"
    other = render({"sandbox": {"agentsBase": text + "more"}})["Deployment/centaur-centaur-dispatcher"]
    assert (
        other["spec"]["template"]["metadata"]["annotations"]["checksum/agents-base"]
        != dispatcher["spec"]["template"]["metadata"]["annotations"]["checksum/agents-base"]
    ), "a new prompt rolls the dispatcher"


@pytest.mark.parametrize(
    "values",
    [
        {"sandbox": {"repo": "git@github.com:acme/api.git"}},
        {"sandbox": {"repo": "http://github.com/acme/api"}},
        {"sandbox": {"repo": "https://token@github.com/acme/api"}},
        {"sandbox": {"reposAllowed": ["acme/*,evil/*"]}},
        {"sandbox": {"reposAllowed": "acme/*"}},
        {"sandbox": {"repos": "acme/api"}},
        {"sandbox": {"agentsBase": 42}},
    ],
)
def test_the_schema_refuses_malformed_repository_values(values):
    with pytest.raises(Exception):
        render(values)


def dispatcher_env_with_mounted_prompt(manifests, tmp_path):
    """The dispatcher's env, with AGENTS_BASE_FILE pointing at a copy of the ConfigMap's file."""
    (container,) = containers(manifests["Deployment/centaur-centaur-dispatcher"])
    env = container_env(container)
    if "AGENTS_BASE_FILE" in env:
        data = manifests["ConfigMap/centaur-centaur-dispatcher-agents-base"]["data"]
        local = tmp_path / "AGENTS_BASE.md"
        local.write_text(data["AGENTS_BASE.md"])
        env["AGENTS_BASE_FILE"] = str(local)
    return env


@pytest.mark.parametrize("component", ["api", "dispatcher"])
def test_binary_accepts_the_repository_settings_the_chart_gives_it(binaries, component, tmp_path):  # noqa: F811
    manifests = render({"sandbox": {**REPOS["sandbox"], "agentsBase": "# Base prompt\n"}})
    if component == "dispatcher":
        env = dispatcher_env_with_mounted_prompt(manifests, tmp_path)
    else:
        (container,) = containers(manifests["Deployment/centaur-centaur-api"])
        env = container_env(container)
    result = subprocess.run([str(binaries / component), "check-config"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


@pytest.mark.parametrize(
    "sandbox, variable",
    [
        ({"repo": "acme/.."}, "AGENT_REPO"),
        ({"repo": "evil/api", "reposAllowed": ["acme/*"]}, "AGENT_REPO"),
        ({"reposAllowed": ["acme/["]}, "AGENT_REPOS_ALLOWED"),
    ],
)
@pytest.mark.parametrize("component", ["api", "dispatcher"])
def test_check_config_names_a_bad_repository_setting(binaries, component, sandbox, variable):  # noqa: F811
    manifests = render({"sandbox": sandbox})
    (container,) = containers(manifests[f"Deployment/centaur-centaur-{component}"])
    result = subprocess.run(
        [str(binaries / component), "check-config"], env=container_env(container), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert variable in result.stderr, result.stderr


def test_check_config_names_a_missing_base_prompt_file(binaries):  # noqa: F811
    manifests = render({"sandbox": {"agentsBase": "# Base prompt\n"}})
    (container,) = containers(manifests["Deployment/centaur-centaur-dispatcher"])
    result = subprocess.run(
        [str(binaries / "dispatcher"), "check-config"], env=container_env(container), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "AGENTS_BASE_FILE" in result.stderr, result.stderr
