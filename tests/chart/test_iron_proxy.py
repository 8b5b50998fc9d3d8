"""iron-proxy's proxy.yaml is rendered from values with the field names iron-proxy reads, and
its Deployment starts it the way the binary expects: a misspelt key inside a transform is
silently ignored (binds nothing), one in a top-level section stops the proxy at start-up, and a
listener on a port below 1024 cannot bind as the pod's non-root user."""
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


# The sections iron-proxy 0.46.x decodes strictly (internal/config/config.go: Config and its
# DNS, Proxy, TLS, Metrics, Management and Log structs, decoded with KnownFields): any other key
# stops the proxy at start-up. The subset of each that the chart renders.
IRON_PROXY_SECTIONS = {
    "dns": {"listen", "proxy_ip", "upstream_resolver", "passthrough", "records"},
    "proxy": {
        "http_listen", "https_listen", "tunnel_listen", "max_request_body_bytes", "max_response_body_bytes",
        "upstream_response_header_timeout", "upstream_deny_cidrs",
    },
    "tls": {"mode", "ca_cert", "ca_key", "cert_cache_size", "leaf_cert_expiry_hours"},
    "metrics": {"listen"},
    "management": {"listen", "api_key_env"},
    "log": {"level"},
}
PROXY_UID = 65532


def port_of(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def proxy_container(manifests):
    return containers(manifests["Deployment/centaur-centaur-iron-proxy"])[-1]


def test_every_section_and_key_is_one_iron_proxy_reads(any_render):
    config = proxy_config(any_render)
    assert set(config) == set(IRON_PROXY_SECTIONS) | {"transforms"}
    for section, known in IRON_PROXY_SECTIONS.items():
        assert set(config[section]) <= known, section


def test_listeners_tls_and_timeouts_use_iron_proxy_field_names(default_render):
    config = proxy_config(default_render)
    assert config["proxy"]["tunnel_listen"] == ":8080"
    assert config["proxy"]["upstream_response_header_timeout"] == "120s"
    assert config["management"] == {"listen": ":9092", "api_key_env": "IRON_MANAGEMENT_API_KEY"}
    assert config["metrics"] == {"listen": ":9090"}
    assert config["tls"] == {"mode": "mitm", "ca_cert": "/etc/iron-proxy/ca/ca.crt", "ca_key": "/etc/iron-proxy/ca/ca.key"}


def test_no_listener_needs_a_privileged_port_and_unused_ones_stay_on_loopback(any_render):
    """iron-proxy always opens DNS, HTTP and HTTPS (empty = :53, :80, :443) besides the tunnel,
    metrics and management listeners; the pod is uid 65532 with every capability dropped."""
    deployment = any_render["Deployment/centaur-centaur-iron-proxy"]
    pod_context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod_context["runAsUser"] == PROXY_UID and pod_context["runAsNonRoot"] is True
    assert proxy_container(any_render)["securityContext"]["capabilities"] == {"drop": ["ALL"]}

    config = proxy_config(any_render)
    listeners = {
        "dns": config["dns"]["listen"],
        "http": config["proxy"]["http_listen"],
        "https": config["proxy"]["https_listen"],
        "tunnel": config["proxy"]["tunnel_listen"],
        "metrics": config["metrics"]["listen"],
        "management": config["management"]["listen"],
    }
    assert all(listeners.values()), "an empty address falls back to a port below 1024"
    ports = {name: port_of(address) for name, address in listeners.items()}
    assert all(port >= 1024 for _, port in ports.values()), ports
    assert len({port for _, port in ports.values()}) == len(ports), "one port per listener"
    for unused in ("dns", "http", "https"):
        assert ports[unused][0] == "127.0.0.1", "sandboxes use the tunnel only"
    # The DNS server refuses to start without an IPv4 proxy_ip, even when nothing queries it.
    assert config["dns"]["proxy_ip"] == "127.0.0.1"


def test_container_runs_the_rendered_config_and_probes_the_health_endpoint(any_render):
    proxy = proxy_container(any_render)
    (flag, path) = proxy["args"]
    assert flag in ("-config", "--config")
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    assert path == f"{mounts['config']}/proxy.yaml"
    assert "command" not in proxy, "the image's entrypoint is the iron-proxy binary"

    config = proxy_config(any_render)
    assert config["tls"]["ca_cert"] == f"{mounts['ca']}/ca.crt"
    assert config["tls"]["ca_key"] == f"{mounts['ca']}/ca.key"

    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports == {
        "tunnel": port_of(config["proxy"]["tunnel_listen"])[1],
        "management": port_of(config["management"]["listen"])[1],
        "health": port_of(config["metrics"]["listen"])[1],
    }
    for probe in ("livenessProbe", "readinessProbe"):
        assert proxy[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe

    service = any_render["Service/centaur-centaur-iron-proxy"]["spec"]["ports"]
    assert {(p["name"], p["port"], p["targetPort"]) for p in service} == {
        ("tunnel", 8080, "tunnel"), ("management", 9092, "management"),
    }


def test_management_api_key_is_in_the_proxy_environment(any_render):
    env = {e["name"] for e in proxy_container(any_render)["env"]}
    assert proxy_config(any_render)["management"]["api_key_env"] in env


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
        name = secret["replace"]["proxy_value"]
        assert set(secret["replace"]) == {"proxy_value", "match_headers"}
        if source == "env":
            # iron-proxy's env source reads type and var only.
            assert secret["source"] == {"type": "env", "var": name}
        else:
            assert set(secret["source"]) == {"type", "secret_ref", "ttl"}
            assert secret["source"]["ttl"] == "15m", "a 1Password source without ttl is cached forever"
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


def test_proxy_image_is_the_published_one_pinned_to_046(any_render):
    repository, tag = proxy_container(any_render)["image"].rsplit(":", 1)
    assert repository == "ironsh/iron-proxy", "iron-proxy's releases are published on Docker Hub"
    assert tag.startswith("0.46."), "0.47 broke Codex's WebSocket traffic"
