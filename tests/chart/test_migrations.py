"""Migrations run from a Helm hook Job (`api migrate`) before the release rolls out; the api
and the dispatcher only check the schema when they start. The Job's container, given the
env the chart renders (DATABASE_URL pointed at a fresh test database), migrates it for real;
on an unmigrated database the api refuses to start,
naming the command."""
import os
import pathlib
import subprocess
import uuid

import pytest

from helm_render import ROOT, containers, render

SERVER = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
JOB = "Job/centaur-centaur-migrate"


@pytest.fixture(scope="module")
def binaries():
    subprocess.run(["cargo", "build", "-q", "--workspace", "--bins"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug"


@pytest.fixture
def fresh_database():
    name = f"centaur_chart_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", SERVER, "-qc", f"CREATE DATABASE {name}"], check=True)
    yield SERVER.rsplit("/", 1)[0] + "/" + name
    subprocess.run(["psql", SERVER, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)


def test_the_migrate_job_is_a_pre_install_and_pre_upgrade_hook(default_render):
    job = default_render[JOB]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    (container,) = containers(job)
    assert container["command"] == ["api", "migrate"]
    database_url = next(e for e in container["env"] if e["name"] == "DATABASE_URL")
    assert database_url["valueFrom"]["secretKeyRef"]["name"] == "centaur-infra-env"
    policy = default_render["NetworkPolicy/centaur-centaur-migrate"]
    assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert 5432 in ports


def test_the_api_refuses_an_unmigrated_database_and_the_migrate_job_migrates_it(binaries, fresh_database):
    (container,) = containers(render()[JOB])
    env = {"PATH": os.environ["PATH"]}
    for entry in container["env"]:
        env[entry["name"]] = fresh_database if entry["name"] == "DATABASE_URL" else entry.get("value", "")
    api_env = {"PATH": os.environ["PATH"], "DATABASE_URL": fresh_database, "SANDBOX_SIGNING_KEY": "0" * 64,
               "PORT": "0", "RUST_LOG": "warn"}

    refused = subprocess.run([str(binaries / "api")], env=api_env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "run `api migrate`" in refused.stderr, refused.stderr

    migrated = subprocess.run([str(binaries / "api"), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    tables = subprocess.run(["psql", fresh_database, "-tAc", "SELECT count(*) FROM _sqlx_migrations WHERE success"],
                            capture_output=True, text=True, check=True)
    assert int(tables.stdout.strip()) == len(list((ROOT / "migrations").glob("*.sql")))
