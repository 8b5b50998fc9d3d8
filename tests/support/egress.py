"""The egress proxy of the tests: the real `mitmdump` running Centaur's addon
(contrib/egress-proxy/centaur_egress.py) and, after it, the test-only router
(tests/support/route_to_fakes.py) that sends real hostnames to local fakes.

    with EgressProxy(PROXY_YAML, env={"OPENAI_API_KEY": "sk-real"},
                     routes={"api.openai.com": fake.address}) as proxy:
        env = {"HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": proxy.ca_file, ...}

A configuration the addon refuses makes the constructor raise EgressProxyError carrying
mitmdump's output (which names the offending key, never a secret value).
"""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADDON = ROOT / "contrib" / "egress-proxy" / "centaur_egress.py"
ROUTER = pathlib.Path(__file__).resolve().parent / "route_to_fakes.py"
READY = "centaur_egress: ready"
LISTENING = re.compile(r"proxy listening at (?:\*|[\d.]+):(\d+)")


class EgressProxyError(RuntimeError):
    """mitmdump exited (or never listened) before it was ready; `.output` is its log."""

    def __init__(self, message, output):
        super().__init__(f"{message}\n--- mitmdump output ---\n{output}")
        self.output = output


def mitmdump_path() -> str:
    """The mitmdump installed next to this interpreter (pip), else the one on PATH."""
    beside = pathlib.Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    found = shutil.which("mitmdump")
    if not found:
        raise EgressProxyError("mitmdump not found: python3 -m pip install -r tests/requirements.txt", "")
    return found


def load_addon_module():
    """contrib/egress-proxy/centaur_egress.py as a module (its loader: parse_config, load, ...)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("centaur_egress", ADDON)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("centaur_egress", module)
    spec.loader.exec_module(module)
    return module


class EgressProxy:
    """mitmdump + the Centaur addon on 127.0.0.1:<free port>, with a fresh confdir (and CA).

    config: proxy.yaml as text, or a path (str / pathlib.Path) of a file.
    env: the proxy process's secrets, e.g. {"OPENAI_API_KEY": "sk-real"}. The process gets only
         these plus PATH/HOME/LANG: never the test runner's own credentials.
    routes: {real hostname: "127.0.0.1:port"}, applied by route_to_fakes after the policy.
    skip_unset: the addon's centaur_skip_unset option.

    Attributes: url ("http://127.0.0.1:PORT"), port, ca_file (CA certificate PEM to trust),
    confdir, log_path (mitmdump's stdout+stderr); methods output(), close().
    """

    def __init__(self, config, env=None, routes=None, *, skip_unset=False, extra_args=(), startup_timeout=30.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="centaur-egress-")
        tmp = pathlib.Path(self._tmp.name)
        self.confdir = tmp / "confdir"
        self.confdir.mkdir()
        if isinstance(config, pathlib.Path) or (isinstance(config, str) and "\n" not in config and os.path.exists(config)):
            self.config_path = pathlib.Path(config)
        else:
            self.config_path = tmp / "proxy.yaml"
            self.config_path.write_text(config)
        self.log_path = tmp / "mitmdump.log"
        self.ca_file = str(self.confdir / "mitmproxy-ca-cert.pem")
        self.process = None
        self.port = None
        self.url = None
        args = [
            mitmdump_path(),
            "--listen-host", "127.0.0.1", "--listen-port", "0",
            "--set", f"confdir={self.confdir}",
            # Connect upstream only when a request is sent, so a router can still redirect it.
            "--set", "connection_strategy=lazy",
            "-s", str(ADDON),
            "--set", f"centaur_config={self.config_path}",
            "--set", f"centaur_skip_unset={'true' if skip_unset else 'false'}",
        ]
        if routes:
            args += ["-s", str(ROUTER), "--set", f"centaur_routes={json.dumps(routes)}"]
        args += list(extra_args)
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",  # the log is how readiness and refusals are seen
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=process_env, start_new_session=True,
            )
        try:
            self._wait_listening(startup_timeout)
        except BaseException:
            self.close()
            raise

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            match = LISTENING.search(output)
            if match and READY in output and os.path.exists(self.ca_file) and self.process.poll() is None:
                self.port = int(match.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                return
            if self.process.poll() is not None:
                raise EgressProxyError(f"mitmdump exited with {self.process.returncode}", self.output())
            time.sleep(0.05)
        raise EgressProxyError(f"mitmdump not listening within {timeout}s", self.output())

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def env(self):
        """What a client (git, curl, Python, Node) needs to go through this proxy."""
        return {
            "HTTPS_PROXY": self.url, "https_proxy": self.url, "HTTP_PROXY": self.url, "http_proxy": self.url,
            "NO_PROXY": "", "no_proxy": "",
            "SSL_CERT_FILE": self.ca_file, "REQUESTS_CA_BUNDLE": self.ca_file,
            "NODE_EXTRA_CA_CERTS": self.ca_file, "GIT_SSL_CAINFO": self.ca_file,
        }

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def proxy_yaml(bindings, extra_domains=(), ttl="10m"):
    """A proxy.yaml in the exact shape contrib/chart renders for iron-proxy, with env sources.

    bindings: [(secret name, host or [hosts], header)], e.g.
        [("OPENAI_API_KEY", "api.openai.com", "Authorization")]
    The secret name is both the placeholder and the proxy's environment variable; the bound
    hosts plus `extra_domains` form the allowlist."""
    import yaml

    domains, secrets = [], []
    for secret, hosts, header in bindings:
        hosts = [hosts] if isinstance(hosts, str) else list(hosts)
        domains += [h for h in hosts if h not in domains]
        secrets.append({
            "source": {"type": "env", "var": secret, "ttl": ttl},
            "replace": {"proxy_value": secret, "match_headers": [header]},
            "rules": [{"host": h} for h in hosts],
        })
    domains += [d for d in extra_domains if d not in domains]
    return yaml.safe_dump({
        "proxy": {"tunnel_listen": ":8080", "upstream_response_header_timeout": "120s"},
        "management": {"listen": ":9092", "api_key_env": "IRON_MANAGEMENT_API_KEY"},
        "tls": {"mode": "mitm", "ca_cert": "/etc/iron-proxy/ca/ca.crt", "ca_key": "/etc/iron-proxy/ca/ca.key"},
        "transforms": [
            {"name": "allowlist", "config": {"domains": domains}},
            {"name": "secrets", "config": {"secrets": secrets}},
        ],
        "log": {"level": "info"},
    }, sort_keys=False)
