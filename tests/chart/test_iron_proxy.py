"""iron-proxy's proxy.yaml is rendered from values with the field names iron-proxy reads:
it ignores unknown keys, so a misspelt key would silently bind nothing."""
import pytest
import yaml

from helm_render import containers, render

BINDINGS = {
    "codex": ("OPENAI_API_KEY", "api.openai.com", "Authorization"),
    "amp": ("AMP_API_KEY", "ampcode.com", "Authorization"),
    "claude-code": ("ANTHROPIC_API_KEY", "api.anthropic.com", "X-Api-Key"),
    "pi-mono": ("ANTHROPIC_API_KEY", "api.anthropic.com", "X-Api-Key"),
}
SOURCE_TYPES = {"onepassword": "1password", "onepassword-connect": "1password_connect", "env": "env"}


def proxy_config(manifests):
    return yaml.safe_load(manifests["ConfigMap/centaur-centaur-iron-proxy"]["data"]["proxy.yaml"])


def transform(config, name):
    (found,) = [t for t in config["transforms"] if t["name"] == name]
    return found["config"]


def test_listeners_tls_and_timeouts_use_iron_proxy_field_names(default_render):
    config = proxy_config(default_render)
    assert set(config) == {"proxy", "management", "tls", "transforms", "log"}
    assert config["proxy"]["tunnel_listen"] == ":8080"
    assert config["proxy"]["upstream_response_header_timeout"] == "120s"
    assert config["management"] == {"listen": ":9092", "api_key_env": "IRON_MANAGEMENT_API_KEY"}
    assert config["tls"]["mode"] == "mitm"
    assert set(config["tls"]) == {"mode", "ca_cert", "ca_key"}


@pytest.mark.parametrize("source", SOURCE_TYPES)
@pytest.mark.parametrize(
    "enabled", [["codex"], ["codex", "amp", "claude-code", "pi-mono"], ["claude-code", "pi-mono"], ["amp"]]
)
def test_one_binding_per_enabled_credential_with_source_and_ttl(source, enabled):
    manifests = render({"ironProxy": {"secretSource": source, "secretTtl": "15m"}, "harnesses": {"enabled": enabled}})
    config = proxy_config(manifests)
    expected = {BINDINGS[h] for h in enabled}
    secrets = transform(config, "secrets")["secrets"]
    assert set(transform(config, "secrets")) == {"secrets"}
    assert len(secrets) == len(expected), "claude-code and pi-mono share one binding"
    seen = set()
    for secret in secrets:
        assert set(secret) == {"source", "replace", "rules"}, "no require:, no hosts:"
        assert secret["source"]["type"] == SOURCE_TYPES[source]
        assert secret["source"]["ttl"] == "15m", "a source without ttl is cached forever"
        name = secret["replace"]["proxy_value"]
        assert set(secret["replace"]) == {"proxy_value", "match_headers"}
        if source == "env":
            assert secret["source"]["var"] == name
        else:
            assert secret["source"]["secret_ref"] == f"op://${{OP_VAULT}}/{name}/credential"
        assert [set(rule) for rule in secret["rules"]] == [{"host"}]
        seen.add((name, secret["rules"][0]["host"], secret["replace"]["match_headers"][0]))
    assert seen == expected
    assert set(transform(config, "allowlist")["domains"]) == {host for _, host, _ in expected}


def test_extra_allowed_domains_carry_no_secret():
    config = proxy_config(render({"ironProxy": {"extraAllowedDomains": ["github.com"]}}))
    assert "github.com" in transform(config, "allowlist")["domains"]
    hosts = {rule["host"] for s in transform(config, "secrets")["secrets"] for rule in s["rules"]}
    assert "github.com" not in hosts


def test_unknown_harness_in_enabled_list_fails_the_render():
    with pytest.raises(Exception):
        render({"harnesses": {"enabled": ["gpt"]}})


def test_proxy_reads_op_vault_and_its_token_from_the_infra_secret(production_render):
    deployment = production_render["Deployment/centaur-centaur-iron-proxy"]
    env = {e["name"]: e for c in containers(deployment) for e in c.get("env", [])}
    for name in ("OP_VAULT", "OP_CONNECT_TOKEN", "IRON_MANAGEMENT_API_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "centaur-infra-env"
    assert env["OP_CONNECT_HOST"]["value"] == "http://centaur-centaur-onepassword-connect:8080"


def test_env_source_reads_each_bound_credential_from_the_infra_secret():
    manifests = render({"ironProxy": {"secretSource": "env"}, "harnesses": {"enabled": ["codex", "claude-code"]}})
    proxy = containers(manifests["Deployment/centaur-centaur-iron-proxy"])[-1]
    env = {e["name"]: e for e in proxy["env"]}
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "centaur-infra-env", "key": name}


def test_proxy_image_is_pinned_to_046(any_render):
    proxy = containers(any_render["Deployment/centaur-centaur-iron-proxy"])[-1]
    assert proxy["image"].rsplit(":", 1)[1].startswith("0.46.")
