"""Fixtures of the image tests: the images scripts/images.sh builds (podman), the real keys of
the session, the fake model servers (tests/harnesses/fake_models.py) behind the test egress
proxy (tests/support/egress.py: real mitmdump + Centaur's addon, real hostnames routed to the
fakes), and the proxy's CA certificate alone in a directory, as the pod's Secret volume
shows it at /firewall-certs.

The tests skip only where podman cannot run at all, and never in CI (CI=true) or under
scripts/test.sh (CENTAUR_REQUIRE_IMAGES=1): there they fail. Missing images are a failure."""
import secrets

import pytest

from image_support import (AGENT_IMAGE, BUILD_HINT, CENTAUR_IMAGE, REQUIRED, image_exists,
                           podman_problem, read_only_dir)

BINDINGS = [
    ("OPENAI_API_KEY", "api.openai.com", "Authorization"),
    ("ANTHROPIC_API_KEY", "api.anthropic.com", "X-Api-Key"),
    ("AMP_API_KEY", "ampcode.com", "Authorization"),
    ("GITHUB_TOKEN", ["github.com", "api.github.com"], "Authorization"),
]
BASE_PROMPT = "BASE-PROMPT-MARK: you work in a Centaur sandbox image.\n"


@pytest.fixture(scope="session", autouse=True)
def images():
    """podman works and both images exist."""
    problem = podman_problem()
    if problem:
        if REQUIRED:
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    missing = [image for image in (CENTAUR_IMAGE, AGENT_IMAGE) if not image_exists(image)]
    if missing:
        pytest.fail(f"missing images {missing}: {BUILD_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def real_keys():
    """The real secrets of the session: only the egress proxy's environment holds them."""
    return {
        "OPENAI_API_KEY": "sk-test-real-openai-" + secrets.token_hex(12),
        "ANTHROPIC_API_KEY": "sk-ant-test-real-" + secrets.token_hex(12),
        "AMP_API_KEY": "sgamp-test-real-" + secrets.token_hex(12),
        "GITHUB_TOKEN": "ghs_test_real_" + secrets.token_hex(12),
    }


@pytest.fixture(scope="session")
def fake_models(real_keys):
    """{"openai": FakeModelServer, "anthropic": FakeModelServer}, accepting only the real keys."""
    from fake_models import FakeModelServer

    servers = {"openai": FakeModelServer("openai", real_keys["OPENAI_API_KEY"]),
               "anthropic": FakeModelServer("anthropic", real_keys["ANTHROPIC_API_KEY"])}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def models(fake_models):
    for server in fake_models.values():
        server.reset()
    return fake_models


@pytest.fixture(scope="session")
def proxy(real_keys, fake_models):
    """The test egress proxy on 127.0.0.1: the chart's bindings and allowlist, the real keys,
    api.openai.com / api.anthropic.com routed to the fakes."""
    from egress import EgressProxy, proxy_yaml

    routes = {"api.openai.com": fake_models["openai"].address,
              "api.anthropic.com": fake_models["anthropic"].address}
    with EgressProxy(proxy_yaml(BINDINGS), env=real_keys, routes=routes) as egress:
        yield egress


@pytest.fixture(scope="session")
def ca_dir(proxy, tmp_path_factory):
    """The proxy's CA certificate (never its key) alone, as `ca.crt`: the Secret
    centaur-firewall-ca mounted at /firewall-certs."""
    with open(proxy.ca_file, "rb") as cert:
        return read_only_dir(tmp_path_factory.mktemp("firewall-certs"), {"ca.crt": cert.read()})


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory):
    """The prompt Secret mounted at /centaur/prompts."""
    return read_only_dir(tmp_path_factory.mktemp("prompts"), {"AGENTS_BASE.md": BASE_PROMPT})
