"""The parsed SAM template, the routes the function crates serve, and IAM helpers."""
import json
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"


@pytest.fixture(scope="session")
def template():
    return yaml.safe_load(TEMPLATE.read_text())


@pytest.fixture(scope="session")
def crate_routes():
    """`api routes`: {crate: [{method, path}]}, from the code itself."""
    subprocess.run(["cargo", "build", "-q", "--workspace", "--bins"], cwd=ROOT, check=True)
    output = subprocess.run(
        [str(ROOT / "target" / "debug" / "api"), "routes"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return {crate: {(r["method"], r["path"]) for r in routes} for crate, routes in json.loads(output).items()}


@pytest.fixture(scope="session")
def functions(template):
    """{crate: resource} for every AWS::Serverless::Function."""
    return {
        resource["Metadata"]["BuildProperties"]["Binary"]: resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def statements(resource):
    """Every IAM statement a SAM function or IAM role carries."""
    properties = resource["Properties"]
    for policy in properties.get("Policies", []):
        document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else {}
        yield from document.get("Statement", [])


def actions(resource):
    return {action for statement in statements(resource) for action in statement.get("Action", [])}
