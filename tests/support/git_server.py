#!/usr/bin/env python3
"""A real Git smart-HTTP server for tests: `git http-backend` (from the installed git) run as
CGI behind a small HTTP server that demands HTTP Basic auth whose password is the real token.

Requests without it get 401 with `WWW-Authenticate: Basic` (git then retries with the
credentials of the URL); a wrong password gets 401 too. Every request is recorded
(`.requests`: method, path, user, password_ok, placeholder_seen). Pushes work
(`http.receivepack=true`). Repositories are bare, at <root>/<owner>/<name>.git.

In pytest:
    with GitServer(token="ghp_real") as git:
        git.create_repo("acme/widgets", {"AGENTS.md": "Be brief."})
        url = git.url + "/acme/widgets.git"   # or route github.com to git.address

Standalone (for Rust tests): prints the port on the first line of stdout, then serves until
killed:
    python3 tests/support/git_server.py --root DIR --token T [--port 0] \
        [--repo owner/name ...] [--file PATH=CONTENT ...]
"""
import argparse
import base64
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_upstream import read_chunked

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Centaur Tests", "GIT_AUTHOR_EMAIL": "tests@centaur.invalid",
    "GIT_COMMITTER_NAME": "Centaur Tests", "GIT_COMMITTER_EMAIL": "tests@centaur.invalid",
}


def git_exec_path() -> pathlib.Path:
    return pathlib.Path(subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip())


def _git(*args, cwd=None, env=None):
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **GIT_IDENTITY, **(env or {}),
    }
    return subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=True).stdout


class GitServer:
    """GitServer(root=None, token=..., host="127.0.0.1", port=0, placeholder="GITHUB_TOKEN").

    root: directory of the bare repositories (a temporary one, removed on close, if None).
    token: the only password accepted. placeholder: recorded if it ever arrives as a password.
    Attributes: root, port, address ("127.0.0.1:PORT", a route target), url
    ("http://127.0.0.1:PORT"), requests (list of dicts). Methods: create_repo, refs,
    commit_files, close.
    """

    def __init__(self, root=None, token="", host="127.0.0.1", port=0, placeholder="GITHUB_TOKEN"):
        if not token:
            raise ValueError("GitServer needs the token it accepts")
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="centaur-git-")
        self.root = pathlib.Path(root or self._tmp.name).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.placeholder = placeholder
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.backend = str(git_exec_path() / "git-http-backend")
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.address = f"{host}:{self.port}"
        self.url = f"http://{self.address}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # -- repositories --------------------------------------------------------------------------

    def repo_path(self, repo: str) -> pathlib.Path:
        return self.root / f"{repo.removesuffix('.git')}.git"

    def create_repo(self, repo: str, files=None, branch="main") -> pathlib.Path:
        """A bare repository `owner/name.git` whose `branch` holds one commit with `files`
        ({path: text}; default a README.md)."""
        bare = self.repo_path(repo)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "-q", "--bare", "-b", branch, str(bare))
        _git("config", "http.receivepack", "true", cwd=bare)
        with tempfile.TemporaryDirectory(prefix="centaur-git-seed-") as work:
            _git("init", "-q", "-b", branch, work)
            for path, text in (files or {"README.md": f"# {repo}\n"}).items():
                target = pathlib.Path(work) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            _git("add", "-A", cwd=work)
            _git("commit", "-q", "-m", "Initial commit", cwd=work)
            _git("push", "-q", str(bare), f"HEAD:refs/heads/{branch}", cwd=work)
        return bare

    def refs(self, repo: str) -> dict:
        """{ref name: commit sha} of a repository, e.g. {"refs/heads/main": "..."}."""
        out = _git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.repo_path(repo))
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def show(self, repo: str, rev: str, path: str) -> str:
        """The text of `path` at `rev` in a repository."""
        return _git("show", f"{rev}:{path}", cwd=self.repo_path(repo))

    # -- HTTP ----------------------------------------------------------------------------------

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                user, password = _basic_credentials(self.headers.get("Authorization", ""))
                ok = password == server.token
                with server.lock:
                    server.requests.append({
                        "method": self.command, "path": self.path, "user": user,
                        "authorized": ok, "placeholder_seen": password == server.placeholder,
                        "had_credentials": password is not None,
                    })
                body = self._read_body()
                if not ok:
                    message = b"Authentication required\n" if password is None else b"Bad credentials\n"
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="centaur-test-git"')
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                self._cgi(user or "git", body)

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return read_chunked(self.rfile)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _cgi(self, user, body):
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack", "GIT_CONFIG_VALUE_0": "true",
                    "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": user, "REMOTE_ADDR": self.client_address[0], "GATEWAY_INTERFACE": "CGI/1.1",
                    "SERVER_PROTOCOL": "HTTP/1.1",
                }
                for name, value in self.headers.items():
                    key = "HTTP_" + name.upper().replace("-", "_")
                    if key not in ("HTTP_AUTHORIZATION", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                        env[key] = value
                result = subprocess.run([server.backend], input=body, env=env, capture_output=True)
                head, payload = b"", result.stdout
                for separator in (b"\r\n\r\n", b"\n\n"):
                    if separator in result.stdout:
                        head, payload = result.stdout.split(separator, 1)
                        break
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                if result.returncode != 0 and not head:
                    status, payload = 500, result.stderr
                self.send_response(status)
                for name, value in headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        return Handler

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _basic_credentials(header: str):
    """(user, password) of a Basic Authorization header, (None, None) otherwise."""
    if not header.startswith("Basic "):
        return None, None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return (user, password) if sep else (None, None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="directory of the bare repositories")
    parser.add_argument("--token", help="the password accepted (or --token-env)")
    parser.add_argument("--token-env", help="environment variable holding the password")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--repo", action="append", default=[], help="create owner/name.git (repeatable)")
    parser.add_argument("--file", action="append", default=[], help="PATH=CONTENT in each created repo")
    args = parser.parse_args(argv)
    token = args.token or (os.environ.get(args.token_env, "") if args.token_env else "")
    if not token:
        parser.error("give --token or --token-env")
    files = dict(item.split("=", 1) for item in args.file) or None
    server = GitServer(root=args.root, token=token, host=args.host, port=args.port)
    for repo in args.repo:
        if not server.repo_path(repo).exists():
            server.create_repo(repo, files)
    print(server.port, flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    if shutil.which("git") is None:
        sys.exit("git is not installed")
    main()
