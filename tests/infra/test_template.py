"""infra/template.yaml against cfn-lint and against the code: every function crate is a
Lambda function with exactly the routes it serves, and IAM is least privilege."""
import pathlib
import subprocess

from sam_template import ROOT, TEMPLATE, actions


def test_cfn_lint_accepts_the_template_without_errors():
    result = subprocess.run(["cfn-lint", str(TEMPLATE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_function_crate_is_a_lambda_function_and_nothing_else_is(functions, crate_routes):
    crates = {p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").exists()} - {"api"}
    assert set(crate_routes) == crates, "api routes must list every function crate"
    assert set(functions) == crates


def test_every_function_runs_the_rust_binary_of_its_crate_on_arm64(template, functions):
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "provided.al2023"
    assert globals_["Architectures"] == ["arm64"]
    for crate, resource in functions.items():
        assert resource["Metadata"]["BuildMethod"] == "rust-cargolambda", crate


def test_each_function_serves_exactly_the_routes_of_its_crate(functions, crate_routes):
    for crate, resource in functions.items():
        events = {
            (event["Properties"]["Method"], event["Properties"]["Path"])
            for event in resource["Properties"]["Events"].values()
            if event["Type"] == "HttpApi"
        }
        assert events == crate_routes[crate], crate


def test_only_the_functions_that_start_turns_may_send_to_the_queue(template, functions):
    # agent-execute, and the Slack webhook, which starts turns in process with the same logic.
    senders = {crate for crate, resource in functions.items() if "sqs:SendMessage" in actions(resource)}
    assert senders == {"agent-execute", "slack-webhook"}
    roles = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert all("sqs:SendMessage" not in actions(role) for role in roles)


def test_the_dispatcher_role_may_receive_delete_and_extend_visibility_only(template):
    role = template["Resources"]["DispatcherRole"]
    assert actions(role) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }


def test_the_queue_is_fifo_without_content_dedup_and_redrives_to_a_fifo_dlq(template):
    resources = template["Resources"]
    queue = resources["ExecutionQueue"]["Properties"]
    assert queue["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is False
    target = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert resources[target]["Properties"]["FifoQueue"] is True
    assert 1 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 10


def test_outputs_name_the_api_the_queue_and_the_dead_letter_queue(template):
    assert {"ApiUrl", "QueueUrl", "DeadLetterQueueUrl", "DispatcherRoleArn"} <= set(template["Outputs"])


def test_no_secret_is_a_literal_value_in_the_template():
    text = TEMPLATE.read_text()
    for name in ("DATABASE_URL", "SANDBOX_SIGNING_KEY", "SLACKBOT_API_KEY"):
        line = next(l for l in text.splitlines() if l.strip().startswith(f"{name}:"))
        index = text.splitlines().index(line)
        assert "resolve:secretsmanager" in text.splitlines()[index + 1], name
