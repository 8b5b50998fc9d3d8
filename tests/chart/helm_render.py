"""Renders contrib/chart with real Helm (helm-python-sdk) and parses the manifests."""
import pathlib

import pytest
import yaml
from helm_python import Chart

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "contrib" / "chart"
RELEASE = "centaur"
NAMESPACE = "centaur-system"
PRODUCTION_VALUES = yaml.safe_load((CHART / "values.production.yaml").read_text())


def render(values=None):
    """{"<Kind>/<name>": manifest} plus "NOTES.txt", for one set of values."""
    files = Chart.load(str(CHART)).render(values or {}, name=RELEASE, namespace=NAMESPACE)
    manifests = {}
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            manifests["NOTES.txt"] = text
            continue
        for document in yaml.safe_load_all(text):
            if document:
                manifests[f"{document['kind']}/{document['metadata']['name']}"] = document
    return manifests


@pytest.fixture(scope="session")
def default_render():
    return render()


@pytest.fixture(scope="session")
def production_render():
    return render(PRODUCTION_VALUES)


@pytest.fixture(params=["default", "production"])
def any_render(request, default_render, production_render):
    return default_render if request.param == "default" else production_render


def containers(manifest):
    """Every container and init container of a Deployment."""
    spec = manifest["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def deployments(manifests):
    return {key: m for key, m in manifests.items() if key.startswith("Deployment/")}
