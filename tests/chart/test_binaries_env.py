"""Every env var the binaries require is provided by the chart: each container's rendered
env (secret references filled with stand-in values) is handed to the real binary's
`check-config`, which names the first missing or invalid variable."""
import os
import pathlib
import subprocess

import pytest

from helm_render import ROOT, containers, render

STAND_INS = {"SANDBOX_SIGNING_KEY": "0" * 64, "DATABASE_URL": "postgres://user@db:5432/centaur"}
FIELD_STAND_INS = {"metadata.name": "centaur-centaur-dispatcher-abc12", "metadata.namespace": "centaur-system"}


@pytest.fixture(scope="session")
def binaries():
    subprocess.run(["cargo", "build", "-q", "--workspace", "--bins"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug"


def container_env(container):
    env = {"PATH": os.environ["PATH"]}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            env[entry["name"]] = STAND_INS.get(entry["name"], f"stand-in-{entry['name'].lower()}")
        else:
            env[entry["name"]] = FIELD_STAND_INS[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"dispatcher": {"queueBackend": "sqs", "sqsQueueUrl": "https://sqs.test/q.fifo", "awsRegion": "us-east-1"}},
        {"api": {"localOperator": False}},
    ],
    ids=["postgres-queue", "sqs-queue", "local-operator-off"],
)
@pytest.mark.parametrize("component", ["api", "dispatcher"])
def test_binary_accepts_the_environment_the_chart_gives_it(binaries, values, component):
    manifests = render(values)
    (container,) = containers(manifests[f"Deployment/centaur-centaur-{component}"])
    command = container["command"][0]
    assert command == component
    result = subprocess.run(
        [str(binaries / command), "check-config"], env=container_env(container), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


def test_check_config_names_a_missing_variable(binaries):
    result = subprocess.run([str(binaries / "dispatcher"), "check-config"], env={"PATH": os.environ["PATH"]},
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
