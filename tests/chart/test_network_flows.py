"""The chart's NetworkPolicies, evaluated (netpol.py) for every flow the system needs —
each allowed — and for the flows that must never happen — each denied. The table is the one
in contrib/chart/README.md ("Network flows"); the rendered pods are the chart's Deployments
plus a sandbox pod labelled as the dispatcher's Kubernetes backend labels it
(shared/kubernetes/src/pod.rs)."""
import pathlib
import re

import pytest

from helm_render import NAMESPACE, PRODUCTION_VALUES, ROOT, render
from netpol import Cluster, External, Namespace, Pod, pod_of

UDP, TCP = "UDP", "TCP"

# Endpoints outside the cluster's pod network.
SLACK_EDGE = External("Slack's Events API (client IP kept by the load balancer)", "34.226.0.10")
SLACK_WEB_API = External("slack.com Web API", "52.4.180.10")
POSTGRES = External("Postgres (RDS)", "10.20.0.5")
SQS = External("SQS", "52.94.233.1")
KUBE_API = External("Kubernetes API server", "172.20.0.10")
MODEL_API = External("a model API / GitHub", "104.18.6.192")
ONEPASSWORD = External("1password.com", "3.33.152.147")

# Pods outside the release (namespace, labels).
KUBE_DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"})
INGRESS = Pod("ingress-nginx-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
POSTGRES_POD = Pod("postgres-0", "databases", {"app": "postgres"})
EXTERNAL_CONNECT = Pod("op-connect", "secrets", {"app": "onepassword-connect"})

NAMESPACES = [
    Namespace(NAMESPACE, {}),
    Namespace("kube-system", {}),
    Namespace("ingress-nginx", {}),
    Namespace("monitoring", {}),
    Namespace("databases", {}),
    Namespace("secrets", {}),
]

SANDBOX_LABELS = {
    "centaur.ai/managed": "true",
    "centaur.ai/sandbox-id": "sbx-0123456789abcdef",
    "centaur.ai/harness": "codex",
    "centaur.ai/warm": "false",
    "app.kubernetes.io/part-of": "centaur",
}


def test_the_sandbox_labels_modelled_here_are_the_ones_the_backend_sets():
    source = (ROOT / "shared" / "kubernetes" / "src" / "pod.rs").read_text()
    names = (ROOT / "shared" / "kubernetes" / "src" / "names.rs").read_text()
    assert 'labels.insert("app.kubernetes.io/part-of".into(), "centaur".into())' in source
    assert re.search(r'MANAGED_LABEL: &str = "centaur\.ai/managed"', names)
    assert 'labels.insert(MANAGED_LABEL.into(), "true".into())' in source


def world(manifests):
    """The cluster (its policies) and every endpoint of the flow table."""
    policies = [m for key, m in manifests.items() if key.startswith("NetworkPolicy/")]
    pods = {
        name: pod_of(manifests[f"Deployment/centaur-centaur-{name}"], name)
        for name in ("api", "dispatcher", "iron-proxy", "onepassword-connect")
        if f"Deployment/centaur-centaur-{name}" in manifests
    }
    pods["sandbox"] = Pod("centaur-sbx-1", NAMESPACE, SANDBOX_LABELS)
    pods["warm sandbox"] = Pod("centaur-sbx-2", NAMESPACE, {**SANDBOX_LABELS, "centaur.ai/warm": "true"})
    return Cluster(policies, NAMESPACES), pods


def flows(pods, connect_host_pod=None):
    """(what, source, destination, port, protocol, allowed) for one render."""
    api, dispatcher, proxy = pods["api"], pods["dispatcher"], pods["iron-proxy"]
    sandbox = pods["sandbox"]
    table = [
        ("Slack -> API webhook, through an ingress controller", INGRESS, api, 8000, TCP, True),
        ("Slack -> API webhook, client IP kept", SLACK_EDGE, api, 8000, TCP, True),
        ("API -> Postgres", api, POSTGRES, 5432, TCP, True),
        ("API -> Postgres in the cluster", api, POSTGRES_POD, 5432, TCP, True),
        ("API -> SQS (443)", api, SQS, 443, TCP, True),
        ("API -> Slack Web API (thread context)", api, SLACK_WEB_API, 443, TCP, True),
        ("dispatcher -> Postgres", dispatcher, POSTGRES, 5432, TCP, True),
        ("dispatcher -> SQS (443)", dispatcher, SQS, 443, TCP, True),
        ("dispatcher -> Slack Web API (answers, progress)", dispatcher, SLACK_WEB_API, 443, TCP, True),
        ("dispatcher -> Kubernetes API (443)", dispatcher, KUBE_API, 443, TCP, True),
        ("dispatcher -> Kubernetes API (6443)", dispatcher, KUBE_API, 6443, TCP, True),
        ("Prometheus -> dispatcher metrics", PROMETHEUS, dispatcher, 9000, TCP, True),
        ("sandbox -> iron-proxy tunnel 8080", sandbox, proxy, 8080, TCP, True),
        ("warm sandbox -> iron-proxy tunnel 8080", pods["warm sandbox"], proxy, 8080, TCP, True),
        ("sandbox -> API 8000", sandbox, api, 8000, TCP, True),
        ("iron-proxy -> model APIs / GitHub (443)", proxy, MODEL_API, 443, TCP, True),
        ("sandbox -> Postgres", sandbox, POSTGRES, 5432, TCP, False),
        ("sandbox -> Postgres in the cluster", sandbox, POSTGRES_POD, 5432, TCP, False),
        ("sandbox -> internet directly (443)", sandbox, MODEL_API, 443, TCP, False),
        ("sandbox -> internet directly (80)", sandbox, MODEL_API, 80, TCP, False),
        ("sandbox -> Slack Web API directly", sandbox, SLACK_WEB_API, 443, TCP, False),
        ("sandbox -> Kubernetes API", sandbox, KUBE_API, 443, TCP, False),
        ("sandbox -> dispatcher metrics 9000", sandbox, dispatcher, 9000, TCP, False),
        ("sandbox -> iron-proxy management 9092", sandbox, proxy, 9092, TCP, False),
        ("sandbox -> iron-proxy metrics 9090", sandbox, proxy, 9090, TCP, False),
        ("sandbox -> another sandbox", sandbox, pods["warm sandbox"], 8080, TCP, False),
        ("internet -> iron-proxy tunnel", SLACK_EDGE, proxy, 8080, TCP, False),
        ("internet -> a sandbox", SLACK_EDGE, sandbox, 8080, TCP, False),
    ]
    for name, pod in pods.items():
        table += [
            (f"{name} -> DNS (UDP 53)", pod, KUBE_DNS, 53, UDP, True),
            (f"{name} -> DNS (TCP 53)", pod, KUBE_DNS, 53, TCP, True),
        ]
    if "onepassword-connect" in pods:
        connect = pods["onepassword-connect"]
        table += [
            ("iron-proxy -> 1Password Connect (8080)", proxy, connect, 8080, TCP, True),
            ("1Password Connect -> 1password.com (443)", connect, ONEPASSWORD, 443, TCP, True),
            ("sandbox -> 1Password Connect", sandbox, connect, 8080, TCP, False),
            ("API -> 1Password Connect", api, connect, 8080, TCP, False),
        ]
    if connect_host_pod is not None:
        pod, port = connect_host_pod
        table += [
            (f"iron-proxy -> existing 1Password Connect ({port})", proxy, pod, port, TCP, True),
            ("sandbox -> existing 1Password Connect", sandbox, pod, port, TCP, False),
        ]
    return table


def check(manifests, connect_host_pod=None):
    cluster, pods = world(manifests)
    wrong = [
        f"{what}: {'denied' if expected else 'allowed'}, must be {'allowed' if expected else 'denied'}"
        for what, source, destination, port, protocol, expected in flows(pods, connect_host_pod)
        if cluster.allows(source, destination, port, protocol) != expected
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("values", [{}, PRODUCTION_VALUES], ids=["default", "production"])
def test_every_needed_flow_is_allowed_and_every_forbidden_flow_denied(values):
    check(render(values))


def test_an_existing_1password_connect_server_is_reachable_from_iron_proxy_only():
    values = {
        "ironProxy": {"secretSource": "onepassword-connect"},
        "onepasswordConnect": {"connect": {"create": False, "host": "http://op-connect.secrets.svc:8080"}},
    }
    check(render(values), connect_host_pod=(EXTERNAL_CONNECT, 8080))
    https = {
        "ironProxy": {"secretSource": "onepassword-connect"},
        "onepasswordConnect": {"connect": {"create": False, "host": "https://connect.example.com"}},
    }
    check(render(https), connect_host_pod=(External("connect.example.com", "93.184.216.34"), 443))


def test_a_1password_service_account_needs_no_connect_flow():
    check(render({"ironProxy": {"secretSource": "onepassword"}}))


def test_the_readme_lists_every_flow_of_the_table():
    readme = (ROOT / "contrib" / "chart" / "README.md").read_text()
    section = readme.split("## Network flows", 1)
    assert len(section) == 2, "contrib/chart/README.md has a 'Network flows' section"
    for needle in (
        "Slack", "Postgres", "SQS", "Kubernetes API", "iron-proxy", "1Password Connect", "DNS",
        "9092", "denied", "allowed",
    ):
        assert needle in section[1], needle


def test_the_evaluator_knows_the_default_deny_and_selector_rules():
    deny_all = {"metadata": {"namespace": "a"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    web = Pod("web", "a", {"app": "web"}, {"http": (8080, TCP)})
    db = Pod("db", "b", {"app": "db"})
    cluster = Cluster([deny_all], [Namespace("a", {}), Namespace("b", {"team": "data"})])
    assert not cluster.allows(web, db, 5432)
    assert cluster.allows(db, External("x", "8.8.8.8"), 53, UDP), "b has no policy: open"
    egress = {
        "metadata": {"namespace": "a"},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"team": "data"}}, "podSelector": {"matchLabels": {"app": "db"}}}],
                 "ports": [{"port": 5000, "endPort": 6000}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
            ],
        },
    }
    ingress = {
        "metadata": {"namespace": "a"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]},
    }
    cluster = Cluster([deny_all, egress, ingress], [Namespace("a", {}), Namespace("b", {"team": "data"})])
    assert cluster.allows(web, db, 5432)
    assert not cluster.allows(web, db, 5432, UDP)
    assert not cluster.allows(web, db, 6001)
    assert cluster.allows(web, External("inside", "10.2.3.4"), 443)
    assert not cluster.allows(web, External("excepted", "10.1.2.3"), 443)
    assert not cluster.allows(web, External("outside", "11.0.0.1"), 443)
    assert cluster.allows(db, web, 8080), "the named port resolves to 8080"
    assert not cluster.allows(db, web, 9090)
    only_ingress = {"metadata": {"namespace": "b"}, "spec": {"podSelector": {}, "ingress": []}}
    cluster = Cluster([only_ingress], [Namespace("b", {})])
    assert cluster.allows(db, External("x", "1.1.1.1"), 443), "no egress isolation without Egress"
    assert not cluster.allows(External("x", "1.1.1.1"), db, 443)


def test_node_local_dns_is_reachable_when_listed():
    node_local = External("NodeLocal DNSCache", "169.254.20.10")
    manifests = render({})
    cluster, pods = world(manifests)
    assert not cluster.allows(pods["sandbox"], node_local, 53, UDP)
    cluster, pods = world(render({"networkPolicy": {"dnsCidrs": ["169.254.20.10/32"]}}))
    for pod in pods.values():
        assert cluster.allows(pod, node_local, 53, UDP), pod.name
        assert cluster.allows(pod, node_local, 53, TCP), pod.name
    assert not cluster.allows(pods["sandbox"], node_local, 443, TCP), "DNS only"


def test_sandboxes_reach_an_api_outside_the_chart_only_at_its_listed_addresses():
    values = {
        "api": {"enabled": False},
        "sandbox": {"apiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com"},
        "networkPolicy": {"sandboxApiCidrs": ["3.5.0.0/16"]},
    }
    cluster, pods = world(render(values))
    gateway = External("API Gateway", "3.5.17.4")
    assert cluster.allows(pods["sandbox"], gateway, 443)
    assert not cluster.allows(pods["sandbox"], gateway, 80)
    assert not cluster.allows(pods["sandbox"], MODEL_API, 443), "still no internet"
    values["sandbox"]["apiUrl"] = "http://api.internal:8080"
    cluster, pods = world(render(values))
    assert cluster.allows(pods["sandbox"], External("api.internal", "3.5.1.1"), 8080)


def test_the_slack_allowlists_reach_the_api():
    manifests = render({"slack": {"allowedTeams": ["T0123", "E0ORG"], "allowedBots": ["B0CI"]}})
    containers = manifests["Deployment/centaur-centaur-api"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for c in containers for e in c.get("env", [])}
    assert env["SLACK_ALLOWED_TEAMS"]["value"] == "T0123,E0ORG"
    assert env["SLACK_ALLOWED_BOTS"]["value"] == "B0CI"
    assert "SLACK_ALLOWED_TEAMS" not in {
        e["name"] for c in render({})["Deployment/centaur-centaur-api"]["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    with pytest.raises(Exception):
        render({"slack": {"allowedTeams": ["acme"]}})
