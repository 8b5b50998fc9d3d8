"""git clone and git push through the egress proxy, as a sandbox does: the URL carries the
placeholder (`x-access-token:GITHUB_TOKEN@github.com`), the proxy swaps it inside the Basic
payload, and a real `git http-backend` (routed as github.com) accepts only the real token."""
import os
import select
import subprocess
import sys

import pytest

from egress import proxy_yaml

CONFIG = proxy_yaml([("GITHUB_TOKEN", ["github.com", "api.github.com"], "Authorization")])
URL = "https://x-access-token:GITHUB_TOKEN@github.com/acme/widgets.git"


def git(*args, cwd=None, proxy=None, home, check=True):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",
        "GIT_AUTHOR_NAME": "Agent", "GIT_AUTHOR_EMAIL": "agent@centaur.invalid",
        "GIT_COMMITTER_NAME": "Agent", "GIT_COMMITTER_EMAIL": "agent@centaur.invalid",
        **(proxy.env() if proxy else {}),
    }
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture
def repo(git_server):
    git_server.create_repo("acme/widgets", {"AGENTS.md": "Answer briefly.\n", "src/lib.rs": "fn main() {}\n"})
    return git_server


def test_clone_and_push_through_the_proxy_with_the_placeholder(repo, egress_proxy, tmp_path):
    proxy = egress_proxy(CONFIG, env={"GITHUB_TOKEN": repo.token}, routes={"github.com": repo.address})
    work = tmp_path / "workspace"
    git("clone", URL, str(work), proxy=proxy, home=tmp_path)
    assert (work / "AGENTS.md").read_text() == "Answer briefly.\n"

    git("checkout", "-q", "-b", "centaur/abc123-1", cwd=work, home=tmp_path)
    (work / "NOTES.md").write_text("pushed through the proxy\n")
    git("add", "NOTES.md", cwd=work, home=tmp_path)
    git("commit", "-q", "-m", "Agent's change", cwd=work, home=tmp_path)
    git("push", "-q", "origin", "centaur/abc123-1", cwd=work, proxy=proxy, home=tmp_path)

    head = git("rev-parse", "HEAD", cwd=work, home=tmp_path).stdout.strip()
    assert repo.refs("acme/widgets")["refs/heads/centaur/abc123-1"] == head
    assert repo.show("acme/widgets", "centaur/abc123-1", "NOTES.md") == "pushed through the proxy\n"
    with_credentials = [r for r in repo.requests if r["had_credentials"]]
    assert with_credentials and all(r["authorized"] and r["user"] == "x-access-token" for r in with_credentials)
    assert {r["path"].split("?")[0].rsplit("/", 1)[-1] for r in with_credentials} >= {"git-upload-pack", "git-receive-pack"}
    assert not any(r["placeholder_seen"] for r in repo.requests), "the placeholder never reaches the server"
    assert repo.token not in proxy.output()


def test_a_wrong_token_behind_the_placeholder_is_refused_by_the_server(repo, egress_proxy, tmp_path):
    proxy = egress_proxy(CONFIG, env={"GITHUB_TOKEN": "ghs_not_the_real_one"}, routes={"github.com": repo.address})
    result = git("clone", URL, str(tmp_path / "workspace"), proxy=proxy, home=tmp_path, check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    assert any(r["had_credentials"] for r in repo.requests)
    assert not any(r["authorized"] for r in repo.requests)
    assert not any(r["placeholder_seen"] for r in repo.requests)


def test_a_git_host_off_the_allowlist_is_refused_at_connect(repo, egress_proxy, tmp_path):
    proxy = egress_proxy(CONFIG, env={"GITHUB_TOKEN": repo.token}, routes={"gitlab.com": repo.address})
    url = "https://x-access-token:GITHUB_TOKEN@gitlab.com/acme/widgets.git"
    result = git("clone", url, str(tmp_path / "workspace"), proxy=proxy, home=tmp_path, check=False)
    assert result.returncode != 0
    assert "403" in result.stderr
    assert repo.requests == []


def test_the_git_server_runs_standalone_for_other_test_suites(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "support", "git_server.py")
    server = subprocess.Popen(
        [sys.executable, script, "--root", str(tmp_path / "repos"), "--token-env", "REAL_TOKEN",
         "--repo", "acme/widgets", "--file", "AGENTS.md=From the standalone server."],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "REAL_TOKEN": "standalone-token"},
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready, "the standalone git server printed no port within 30s"
        port = int(server.stdout.readline())  # the first line, once repositories exist and it listens
        git("clone", f"http://x-access-token:standalone-token@127.0.0.1:{port}/acme/widgets.git",
            str(tmp_path / "clone"), home=tmp_path)
        assert (tmp_path / "clone" / "AGENTS.md").read_text() == "From the standalone server."
        refused = git("ls-remote", f"http://x-access-token:wrong@127.0.0.1:{port}/acme/widgets.git",
                      home=tmp_path, check=False)
        assert refused.returncode != 0 and "Authentication failed" in refused.stderr
    finally:
        server.kill()
        server.wait()
