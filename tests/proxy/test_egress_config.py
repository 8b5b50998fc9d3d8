"""The egress addon loads a proxy.yaml strictly: what iron-proxy would silently ignore (a
misspelt field) or what this proxy cannot serve (1Password sources, a missing variable) stops
mitmdump at start-up with a message naming the key. Each case starts the real mitmdump."""
import copy

import pytest
import requests
import yaml

from egress import EgressProxy, EgressProxyError, load_addon_module, proxy_yaml

BINDINGS = [
    ("OPENAI_API_KEY", "api.openai.com", "Authorization"),
    ("ANTHROPIC_API_KEY", "api.anthropic.com", "X-Api-Key"),
]
ENV = {"OPENAI_API_KEY": "sk-real-config-test", "ANTHROPIC_API_KEY": "sk-ant-real-config-test"}
BASE = yaml.safe_load(proxy_yaml(BINDINGS))
addon = load_addon_module()


def edited(edit):
    config = copy.deepcopy(BASE)
    edit(config)
    return yaml.safe_dump(config)


def secret(config, i=0):
    return config["transforms"][1]["config"]["secrets"][i]


def refused(config, env=ENV, **options):
    with pytest.raises(EgressProxyError) as err:
        EgressProxy(config, env=env, **options).close()
    assert "refusing to load" in err.value.output or "centaur_egress" in err.value.output
    for value in ENV.values():
        assert value not in err.value.output, "a secret value in the proxy's output"
    return err.value.output


def test_the_chart_shaped_config_loads_with_the_keys_the_local_proxy_ignores(egress_proxy, recording_upstream):
    # proxy.tunnel_listen, upstream_response_header_timeout, management, tls, log and the
    # sources' ttl are iron-proxy's business: accepted here.
    assert {"proxy", "management", "tls", "log"} <= set(BASE)
    assert secret(BASE)["source"]["ttl"] == "10m"
    fake = recording_upstream()
    proxy = egress_proxy(yaml.safe_dump(BASE), env=ENV, routes={"api.openai.com": fake.address})
    session = requests.Session()
    session.trust_env = False
    response = session.get(
        "https://api.openai.com/v1/models", headers={"Authorization": "Bearer OPENAI_API_KEY"},
        proxies={"https": proxy.url}, verify=proxy.ca_file,
    )
    assert response.status_code == 200
    assert fake.wait_for(1)[0].header("Authorization") == ["Bearer sk-real-config-test"]


def test_misspelt_rules_as_hosts_refuses_to_start():
    def misspell(config):
        secret(config)["hosts"] = secret(config).pop("rules")

    output = refused(edited(misspell))
    assert "transforms[1].config.secrets[0].hosts: unknown key 'hosts'" in output
    assert "transforms[1].config.secrets[0].rules: is required" in output


@pytest.mark.parametrize(
    "edit, path",
    [
        (lambda c: c.update(proxies={}), "proxies: unknown key"),
        (lambda c: c["proxy"].update(tunnel_listn=":1"), "proxy.tunnel_listn: unknown key"),
        (lambda c: c["transforms"][0]["config"].update(domain=["x.test"]), "transforms[0].config.domain: unknown key"),
        (lambda c: secret(c)["replace"].update(match_header=["X-Api-Key"]),
         "transforms[1].config.secrets[0].replace.match_header: unknown key"),
        (lambda c: secret(c)["source"].update(variable="X"), "transforms[1].config.secrets[0].source.variable: unknown key"),
        (lambda c: secret(c)["rules"][0].update(hostname="x.test"),
         "transforms[1].config.secrets[0].rules[0].hostname: unknown key"),
    ],
    ids=["top-level", "proxy", "allowlist", "replace", "source", "rule"],
)
def test_an_unknown_key_anywhere_refuses_to_start_naming_its_path(edit, path):
    assert path in refused(edited(edit))


@pytest.mark.parametrize("kind, extra", [("1password", {}), ("1password_connect", {"host_env": "OP_CONNECT_HOST"})])
def test_a_source_type_the_local_proxy_cannot_serve_refuses_to_start(kind, extra):
    def onepassword(config):
        secret(config)["source"] = {"type": kind, "secret_ref": "op://vault/OPENAI_API_KEY/credential", "ttl": "10m", **extra}

    output = refused(edited(onepassword))
    assert f"transforms[1].config.secrets[0].source.type: source type '{kind}' cannot be served" in output


def test_an_unknown_source_type_refuses_to_start():
    output = refused(edited(lambda c: secret(c)["source"].update(type="vault")))
    assert "transforms[1].config.secrets[0].source.type: unknown source type 'vault'" in output


def test_a_missing_env_var_refuses_to_start_naming_the_variable():
    output = refused(yaml.safe_dump(BASE), env={"OPENAI_API_KEY": ENV["OPENAI_API_KEY"]})
    assert "environment variable ANTHROPIC_API_KEY is not set" in output


def test_skip_unset_drops_only_the_binding_whose_variable_is_unset(egress_proxy, recording_upstream):
    openai, anthropic = recording_upstream(), recording_upstream()
    proxy = egress_proxy(
        yaml.safe_dump(BASE), env={"OPENAI_API_KEY": ENV["OPENAI_API_KEY"]}, skip_unset=True,
        routes={"api.openai.com": openai.address, "api.anthropic.com": anthropic.address},
    )
    assert "skipping secret ANTHROPIC_API_KEY for api.anthropic.com: environment variable ANTHROPIC_API_KEY is unset" \
        in proxy.output()
    session = requests.Session()
    session.trust_env = False
    kwargs = {"proxies": {"https": proxy.url}, "verify": proxy.ca_file}
    session.get("https://api.openai.com/v1/models", headers={"Authorization": "Bearer OPENAI_API_KEY"}, **kwargs)
    session.get("https://api.anthropic.com/v1/models", headers={"X-Api-Key": "ANTHROPIC_API_KEY"}, **kwargs)
    assert openai.wait_for(1)[0].header("Authorization") == [f"Bearer {ENV['OPENAI_API_KEY']}"]
    assert anthropic.wait_for(1)[0].header("X-Api-Key") == ["ANTHROPIC_API_KEY"], "still allowed, nothing swapped"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["transforms"].pop(0), "no allowlist transform"),
        (lambda c: secret(c)["replace"].update(require=True), "replace.require: is an iron-proxy feature"),
        (lambda c: secret(c).update(inject={"header": "X"}), "secrets[0].inject: is an iron-proxy feature"),
        (lambda c: c["transforms"].append({"name": "annotate", "config": {}}), "transform 'annotate' is an iron-proxy"),
        (lambda c: c["transforms"][0]["config"]["domains"].append("api-?.test"), "only exact hosts"),
    ],
    ids=["no-allowlist", "require", "inject", "other-transform", "glob"],
)
def test_features_the_local_proxy_does_not_implement_refuse_to_start(edit, message):
    assert message in refused(edited(edit))


def test_options_that_would_write_real_secrets_out_are_refused():
    output = refused(yaml.safe_dump(BASE), extra_args=["--set", "flow_detail=3"])
    assert "flow_detail > 1 would print real secrets" in output


# -- the loader and the header rules, without a proxy ------------------------------------------


def test_parse_collects_every_problem_with_its_path():
    def broken(config):
        secret(config)["hosts"] = secret(config).pop("rules")
        secret(config, 1)["source"]["ttl"] = "ten minutes"

    with pytest.raises(addon.ConfigError) as err:
        addon.parse_config(edited(broken))
    assert err.value.problems == [
        "transforms[1].config.secrets[0].hosts: unknown key 'hosts' (expected one of: allow_connect_without_header, "
        "inject, match_body, match_headers, proxy_value, replace, require, rules, source)",
        "transforms[1].config.secrets[0].rules: is required",
        "transforms[1].config.secrets[1].source.ttl: 'ten minutes' is not a duration like 30s, 10m or 1h",
    ]


@pytest.mark.parametrize(
    "pattern, host, expected",
    [
        ("api.openai.com", "api.openai.com", True), ("api.openai.com", "API.OpenAI.com.", True),
        ("api.openai.com", "openai.com", False), ("*.github.com", "github.com", True),
        ("*.github.com", "codeload.github.com", True), ("*.github.com", "evilgithub.com", False),
        ("*", "anything.test", True),
    ],
)
def test_host_patterns_follow_iron_proxy(pattern, host, expected):
    assert addon.host_matches(pattern, host) is expected


def test_basic_auth_replacement_keeps_other_schemes_and_bad_base64_as_plain_text():
    replace = addon.replace_in_header
    assert replace("authorization", b"Bearer P", b"P", b"real") == b"Bearer real"
    assert replace("authorization", b"Basic dTpQ", b"P", b"real") == b"Basic dTpyZWFs"  # u:P -> u:real
    assert replace("authorization", b"Basic not-base64-P", b"P", b"real") == b"Basic not-base64-real"
    assert replace("x-api-key", b"Basic dTpQ", b"P", b"real") == b"Basic dTpQ"


# -- contrib/egress-proxy/proxy.local.yaml -----------------------------------------------------

LOCAL = addon.__file__.replace("centaur_egress.py", "proxy.local.yaml")


def test_the_local_config_binds_each_harness_credential_and_github():
    with open(LOCAL) as file:
        config = addon.parse_config(file.read())
    bound = {(b.source.var, host, b.match_headers) for b in config.bindings for host in b.hosts}
    assert bound == {
        ("OPENAI_API_KEY", "api.openai.com", ("authorization",)),
        ("ANTHROPIC_API_KEY", "api.anthropic.com", ("x-api-key",)),
        ("AMP_API_KEY", "ampcode.com", ("authorization",)),
        ("GITHUB_TOKEN", "github.com", ("authorization",)),
        ("GITHUB_TOKEN", "api.github.com", ("authorization",)),
    }
    assert set(config.domains) == {host for _, host, _ in bound}


def test_the_local_config_runs_with_only_openai_exported_when_skipping_unset(egress_proxy, recording_upstream):
    refused_output = refused(LOCAL, env={"OPENAI_API_KEY": ENV["OPENAI_API_KEY"]})
    assert "environment variable ANTHROPIC_API_KEY is not set" in refused_output

    fake = recording_upstream()
    proxy = egress_proxy(LOCAL, env={"OPENAI_API_KEY": ENV["OPENAI_API_KEY"]}, skip_unset=True,
                         routes={"api.openai.com": fake.address})
    for var in ("ANTHROPIC_API_KEY", "AMP_API_KEY", "GITHUB_TOKEN"):
        assert f"environment variable {var} is unset" in proxy.output()
    session = requests.Session()
    session.trust_env = False
    session.post("https://api.openai.com/v1/responses", json={}, headers={"Authorization": "Bearer OPENAI_API_KEY"},
                 proxies={"https": proxy.url}, verify=proxy.ca_file)
    assert fake.wait_for(1)[0].header("Authorization") == [f"Bearer {ENV['OPENAI_API_KEY']}"]
