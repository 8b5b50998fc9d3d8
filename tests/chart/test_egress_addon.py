"""The proxy.yaml the chart renders for iron-proxy is the one the local egress addon reads
(contrib/egress-proxy/centaur_egress.py), which refuses any field it does not know: a field
name the chart gets wrong fails here. With `ironProxy.secretSource: env` the rendered file is
served by the real mitmdump; with the 1Password sources every field parses and only the source
type is refused."""
import copy

import pytest
import requests

from egress import EgressProxy, load_addon_module
from fake_upstream import RecordingServer
from helm_render import PRODUCTION_VALUES, render

addon = load_addon_module()
ALL_HARNESSES = ["codex", "amp", "claude-code", "pi-mono"]


def rendered_proxy_yaml(values):
    return render(values)["ConfigMap/centaur-centaur-iron-proxy"]["data"]["proxy.yaml"]


def with_source(source, harnesses=ALL_HARNESSES):
    values = copy.deepcopy(PRODUCTION_VALUES)
    values.setdefault("ironProxy", {})["secretSource"] = source
    values.setdefault("harnesses", {})["enabled"] = harnesses
    return values


@pytest.mark.parametrize(
    "values, source_type",
    [
        (PRODUCTION_VALUES, "1password_connect"),
        (with_source("onepassword-connect"), "1password_connect"),
        (with_source("onepassword"), "1password"),
    ],
    ids=["production", "onepassword-connect", "onepassword"],
)
def test_onepassword_sources_parse_strictly_and_are_refused_only_for_their_type(values, source_type):
    text = rendered_proxy_yaml(values)
    config = addon.parse_config(text)  # raises on any unknown or misspelt field
    assert config.bindings, "at least one credential is bound"
    assert config.domains
    for binding in config.bindings:
        assert binding.source.type == source_type
        assert binding.source.secret_ref == f"op://${{OP_VAULT}}/{binding.proxy_value}/credential"
        assert set(binding.hosts) <= set(config.domains)
    with pytest.raises(addon.UnservableSourceError) as err:
        addon.load_policy(text, environ={})
    assert len(err.value.problems) == len(config.bindings)
    assert all(f"source type '{source_type}' cannot be served" in p for p in err.value.problems)


def test_env_source_render_loads_and_serves_every_binding():
    text = rendered_proxy_yaml(with_source("env"))
    config = addon.parse_config(text)
    names = {b.source.var for b in config.bindings}
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AMP_API_KEY"} <= names
    real = {name: f"real-{name.lower()}-value" for name in names}
    policy = addon.load_policy(text, environ=real)
    assert len(policy.bindings) == len(config.bindings)

    hosts = sorted({host for b in config.bindings for host in b.hosts})
    fakes = {host: RecordingServer() for host in hosts}
    try:
        with EgressProxy(text, env=real, routes={h: f.address for h, f in fakes.items()}) as proxy:
            session = requests.Session()
            session.trust_env = False
            session.proxies = {"https": proxy.url}
            session.verify = proxy.ca_file
            for binding in config.bindings:
                (header,) = binding.match_headers
                for host in binding.hosts:
                    path = f"/v1/check/{host}/{len(binding.proxy_value)}"
                    placeholder = binding.proxy_value
                    value = f"Bearer {placeholder}" if header == "authorization" else placeholder
                    assert session.get(f"https://{host}{path}", headers={header: value}).status_code == 200
                    (seen,) = [r for r in fakes[host].wait_for(1) if r.path == path]
                    expected = real[binding.source.var]
                    assert seen.header(header) == [value.replace(placeholder, expected)]
                    assert placeholder.encode() not in seen.raw()
            with pytest.raises(requests.exceptions.ProxyError, match="403"):
                session.get("https://example.com/")
            for value in real.values():
                assert value not in proxy.output()
    finally:
        for fake in fakes.values():
            fake.close()


def test_env_source_render_refuses_to_start_without_the_bound_variables():
    text = rendered_proxy_yaml(with_source("env", ["codex"]))
    with pytest.raises(addon.MissingSecretError) as err:
        addon.load_policy(text, environ={})
    assert err.value.problems == ["transforms[1].config.secrets[0].source.var: environment variable OPENAI_API_KEY is not set"]
