"""pytest fixtures over tests/support, made available to every suite by tests/conftest.py."""
import secrets

import pytest

from egress import EgressProxy
from fake_upstream import RecordingServer
from git_server import GitServer


def _closing_factory(cls):
    """A factory fixture body: each object made is closed after the test."""
    made = []

    def make(*args, **kwargs):
        made.append(cls(*args, **kwargs))
        return made[-1]

    yield make
    for thing in made:
        thing.close()


@pytest.fixture
def egress_proxy():
    """Factory: egress_proxy(config, env=None, routes=None, skip_unset=False, extra_args=())
    -> a started EgressProxy (tests/support/egress.py), closed after the test."""
    yield from _closing_factory(EgressProxy)


@pytest.fixture
def recording_upstream():
    """Factory: recording_upstream(status=200, body=None) -> a RecordingServer on 127.0.0.1."""
    yield from _closing_factory(RecordingServer)


@pytest.fixture
def git_server():
    """A GitServer (git http-backend behind Basic auth) accepting only `git_server.token`."""
    server = GitServer(token="ghs_" + secrets.token_hex(16))
    yield server
    server.close()
