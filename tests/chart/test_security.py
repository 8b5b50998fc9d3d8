"""Secrets only by reference, least-privilege RBAC, and network policies that leave
sandboxes only iron-proxy and the API."""
from helm_render import containers, deployments, render

SECRET_NAMES = {
    "DATABASE_URL", "IRON_MANAGEMENT_API_KEY", "SANDBOX_SIGNING_KEY", "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET", "SLACKBOT_API_KEY", "OP_CONNECT_TOKEN", "OP_SERVICE_ACCOUNT_TOKEN",
    "OP_VAULT", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AMP_API_KEY",
}


def all_env(manifests):
    for deployment in deployments(manifests).values():
        for container in containers(deployment):
            yield from container.get("env", [])


def test_secret_env_comes_only_from_the_infra_secret_by_reference(any_render):
    for entry in all_env(any_render):
        if entry["name"] in SECRET_NAMES:
            assert "value" not in entry, entry
            assert entry["valueFrom"]["secretKeyRef"]["name"] == "centaur-infra-env", entry


def test_env_prefix_is_applied_to_every_secret_key():
    manifests = render({"secretManager": {"existingSecretName": "infra", "envPrefix": "CENTAUR_"}})
    refs = [e["valueFrom"]["secretKeyRef"] for e in all_env(manifests) if e["name"] in SECRET_NAMES]
    assert refs
    for ref in refs:
        assert ref["name"] == "infra"
        assert ref["key"].startswith("CENTAUR_")


def test_chart_renders_no_secret_objects_besides_the_proxy_ca(any_render):
    secrets = [key for key in any_render if key.startswith("Secret/")]
    assert secrets == ["Secret/centaur-firewall-ca"]
    assert set(any_render["Secret/centaur-firewall-ca"]["data"]) == {"ca.crt", "ca.key"}
    assert "Secret/centaur-firewall-ca" not in render({"ironProxy": {"ca": {"generate": False}}})


def test_dispatcher_role_grants_only_the_verbs_it_uses_in_its_namespace(any_render):
    assert not [key for key in any_render if key.startswith(("ClusterRole", "ClusterRoleBinding"))]
    role = any_render["Role/centaur-centaur-dispatcher"]
    granted = {(tuple(rule["apiGroups"]), r): set(rule["verbs"]) for rule in role["rules"] for r in rule["resources"]}
    assert granted == {
        (("",), "pods"): {"create", "delete", "get", "list", "watch"},
        (("",), "pods/attach"): {"create", "get"},
        (("",), "pods/log"): {"get"},
        (("",), "secrets"): {"create", "delete", "get"},
    }
    binding = any_render["RoleBinding/centaur-centaur-dispatcher"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "centaur-centaur-dispatcher", "namespace": "centaur-system"}
    ]
    dispatcher = any_render["Deployment/centaur-centaur-dispatcher"]["spec"]["template"]["spec"]
    assert dispatcher["serviceAccountName"] == "centaur-centaur-dispatcher"
    for name in ("centaur-centaur-api", "centaur-centaur-iron-proxy"):
        assert any_render[f"Deployment/{name}"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_dispatcher_service_account_carries_the_irsa_annotation():
    arn = "arn:aws:iam::123456789012:role/centaur-dispatcher"
    manifests = render({"dispatcher": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}}}})
    annotations = manifests["ServiceAccount/centaur-centaur-dispatcher"]["metadata"]["annotations"]
    assert annotations == {"eks.amazonaws.com/role-arn": arn}


def policies(manifests):
    return {k.split("/", 1)[1]: m["spec"] for k, m in manifests.items() if k.startswith("NetworkPolicy/")}


def test_default_deny_covers_every_centaur_pod_including_sandboxes(any_render):
    deny = policies(any_render)["centaur-centaur-default-deny"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "centaur"}}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_sandboxes_reach_only_the_proxy_tunnel_and_the_api(any_render):
    rules = policies(any_render)["centaur-centaur-sandboxes"]
    assert rules["podSelector"] == {"matchLabels": {"centaur.ai/managed": "true"}}
    reached = {
        (peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"], port["port"])
        for rule in rules["egress"] for peer in rule["to"] for port in rule["ports"]
    }
    assert reached == {("iron-proxy", 8080), ("api", 8000)}
    for name, spec in policies(any_render).items():
        if spec["podSelector"].get("matchLabels", {}).get("centaur.ai/managed") == "true":
            assert name == "centaur-centaur-sandboxes"


def test_iron_proxy_accepts_sandboxes_and_reaches_only_443(any_render):
    proxy = policies(any_render)["centaur-centaur-iron-proxy"]
    assert proxy["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"centaur.ai/managed": "true"}}}]
    assert proxy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert proxy["egress"][0] == {"ports": [{"protocol": "TCP", "port": 443}]}


def test_dns_is_allowed_for_every_centaur_pod(any_render):
    dns = policies(any_render)["centaur-centaur-dns"]
    assert {p["port"] for p in dns["egress"][0]["ports"]} == {53}


def test_network_policies_can_be_turned_off():
    assert not policies(render({"networkPolicy": {"enabled": False}}))


def test_control_plane_containers_run_unprivileged(any_render):
    for deployment in deployments(any_render).values():
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
