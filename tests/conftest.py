"""Shared by every Python suite under tests/: puts tests/support on sys.path (the egress proxy,
the Git server, recording fakes) and offers its fixtures: egress_proxy, recording_upstream,
git_server (tests/support/centaur_fixtures.py)."""
import pathlib
import sys

SUPPORT = pathlib.Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from centaur_fixtures import egress_proxy, git_server, recording_upstream  # noqa: E402,F401
