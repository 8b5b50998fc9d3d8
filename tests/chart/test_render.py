"""The chart lints and renders with real Helm, every manifest is valid Kubernetes, and the
names the deployment guide uses exist."""
import helm_python
import kubernetes_validate
import pytest
from helm_python import HelmError

from helm_render import CHART, NAMESPACE, PRODUCTION_VALUES, containers, deployments, render

KUBERNETES_VERSION = "1.30"


def test_helm_lint_reports_no_errors_for_default_and_production_values():
    for values in ({}, PRODUCTION_VALUES):
        result = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert result["errors"] == [], result
        assert [m for m in result["messages"] if m["severity"] > 1] == [], result


def test_every_rendered_manifest_is_valid_against_the_kubernetes_schema(any_render):
    for key, manifest in any_render.items():
        if key == "NOTES.txt":
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_guide_names_exist_in_the_release_namespace(any_render):
    api = any_render["Deployment/centaur-centaur-api"]
    assert api["metadata"]["namespace"] == NAMESPACE
    assert containers(api)[0]["ports"][0]["containerPort"] == 8000
    assert any_render["Service/centaur-centaur-api"]["spec"]["ports"][0]["port"] == 8000
    assert "Deployment/centaur-centaur-dispatcher" in any_render
    assert "Deployment/centaur-centaur-iron-proxy" in any_render
    assert "Service/centaur-centaur-iron-proxy" in any_render
    assert "ServiceAccount/centaur-centaur-dispatcher" in any_render


def test_api_probes_health_for_liveness_and_ready_for_readiness(any_render):
    api = containers(any_render["Deployment/centaur-centaur-api"])[0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_dispatcher_serves_health_and_metrics_on_9000(any_render):
    dispatcher = containers(any_render["Deployment/centaur-centaur-dispatcher"])[0]
    assert dispatcher["ports"][0]["containerPort"] == 9000
    assert dispatcher["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert dispatcher["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_notes_carry_the_verification_commands(any_render):
    notes = any_render["NOTES.txt"]
    assert f"kubectl exec -n {NAMESPACE} deploy/centaur-centaur-api" in notes
    assert "curl -fsS http://localhost:8000/health/ready" in notes
    assert "POST http://localhost:8000/admin/api-keys" in notes
    assert "kubectl get pods -n centaur-system -l centaur.ai/managed=true" in notes


def test_production_values_run_sandboxes_under_gvisor_with_a_warm_pool(production_render):
    env = {e["name"]: e for e in containers(production_render["Deployment/centaur-centaur-dispatcher"])[0]["env"]}
    assert env["SANDBOX_RUNTIME_CLASS_NAME"]["value"] == "gvisor"
    assert env["WARM_POOL_ENABLED"]["value"] == "true"
    assert env["SANDBOX_BACKEND"]["value"] == "kubernetes"
    assert "Deployment/centaur-centaur-onepassword-connect" in production_render


def test_disabling_the_api_drops_its_deployment_and_points_sandboxes_elsewhere():
    manifests = render({"api": {"enabled": False}, "sandbox": {"apiUrl": "https://api.example.test"}})
    assert "Deployment/centaur-centaur-api" not in manifests
    env = {e["name"]: e for e in containers(manifests["Deployment/centaur-centaur-dispatcher"])[0]["env"]}
    assert env["CENTAUR_API_URL"]["value"] == "https://api.example.test"


def test_sqs_queue_backend_requires_the_queue_url():
    with pytest.raises(HelmError):
        render({"dispatcher": {"queueBackend": "sqs"}})
    manifests = render({"dispatcher": {"queueBackend": "sqs", "sqsQueueUrl": "https://sqs.test/q.fifo"}})
    for deployment in deployments(manifests).values():
        env = {e["name"]: e.get("value") for c in containers(deployment) for e in c.get("env", [])}
        if "QUEUE_BACKEND" in env:
            assert env["SQS_QUEUE_URL"] == "https://sqs.test/q.fifo"


def test_values_outside_the_schema_are_refused():
    with pytest.raises(HelmError):
        render({"ironProxy": {"secretSource": "vault"}})
    with pytest.raises(HelmError):
        render({"api": {"sandboxBackend": "kubernetes"}})
    assert PRODUCTION_VALUES["sandbox"]["runtimeClassName"] == "gvisor"


def test_slack_values_reach_the_api_and_the_dispatcher():
    manifests = render({"slack": {"apiUrl": "https://slack.internal/api", "botUserId": "UBOT"}})
    for component in ("api", "dispatcher"):
        env = {e["name"]: e for e in containers(manifests[f"Deployment/centaur-centaur-{component}"])[0]["env"]}
        assert env["SLACK_API_URL"]["value"] == "https://slack.internal/api"
        assert env["SLACK_BOT_USER_ID"]["value"] == "UBOT"
        assert env["SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "centaur-infra-env"


@pytest.mark.parametrize("local_operator, expected", [(None, "on"), (True, "on"), (False, "off")])
def test_api_local_operator_value_reaches_the_api_as_local_operator(local_operator, expected):
    values = {} if local_operator is None else {"api": {"localOperator": local_operator}}
    manifests = render(values)
    env = {e["name"]: e for e in containers(manifests["Deployment/centaur-centaur-api"])[0]["env"]}
    assert env["LOCAL_OPERATOR"] == {"name": "LOCAL_OPERATOR", "value": expected}
    notes = manifests["NOTES.txt"]
    assert ("POST http://localhost:8000/admin/api-keys" in notes) is (expected == "on")


def test_api_local_operator_must_be_a_boolean():
    with pytest.raises(HelmError):
        render({"api": {"localOperator": "off"}})


def test_api_and_dispatcher_log_json_lines_by_default(default_render):
    for component in ("api", "dispatcher"):
        (container,) = containers(default_render[f"Deployment/centaur-centaur-{component}"])
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["LOG_FORMAT"] == "json", component
    assert render({"logFormat": "text"})["Deployment/centaur-centaur-api"]


def test_api_and_dispatcher_have_disruption_budgets_that_never_block_a_drain(any_render):
    for component in ("api", "dispatcher"):
        budget = any_render[f"PodDisruptionBudget/centaur-centaur-{component}"]
        assert budget["spec"]["maxUnavailable"] == 1
        deployment = any_render[f"Deployment/centaur-centaur-{component}"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    without_api = render({"api": {"enabled": False}})
    assert "PodDisruptionBudget/centaur-centaur-api" not in without_api
