"""Centaur's egress addon (contrib/egress-proxy/centaur_egress.py) enforcing a chart-shaped
proxy.yaml, each case through the real mitmdump over real HTTP(S): the client trusts the
proxy's CA, the real hostnames are routed to local recording fakes inside the proxy."""
import base64
import http.client
import os
import socket
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from egress import EgressProxy, proxy_yaml
from fake_upstream import RecordingServer, read_ws_frame, ws_frame

REAL = {
    "OPENAI_API_KEY": "sk-real-openai-" + uuid.uuid4().hex,
    "ANTHROPIC_API_KEY": "sk-ant-real-" + uuid.uuid4().hex,
    "GITHUB_TOKEN": "ghs_real_" + uuid.uuid4().hex,
}
BINDINGS = [
    ("OPENAI_API_KEY", "api.openai.com", "Authorization"),
    ("ANTHROPIC_API_KEY", "api.anthropic.com", "X-Api-Key"),
    ("GITHUB_TOKEN", ["github.com", "api.github.com"], "Authorization"),
]
HOSTS = ["api.openai.com", "api.anthropic.com", "github.com", "api.github.com", "streaming.test", "evil.example.com"]


@pytest.fixture(scope="module")
def fakes():
    servers = {host: RecordingServer() for host in HOSTS if host != "streaming.test"}
    servers["streaming.test"] = StreamingServer()
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="module")
def proxy(fakes):
    # evil.example.com has a route but is not on the allowlist: routing must not let it through.
    config = proxy_yaml(BINDINGS, extra_domains=["*.wild.test", "streaming.test"])
    with EgressProxy(config, env=REAL, routes={h: s.address for h, s in fakes.items()}) as proxy:
        yield proxy


def via(proxy):
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": proxy.url, "http": proxy.url}
    session.verify = proxy.ca_file
    return session


def sent(fake, path):
    """What the fake received for the (unique) path."""
    found = [r for r in fake.wait_for(1) if r.path == path] or [
        r for r in fake.wait_for(len(fake.requests)) if r.path == path
    ]
    assert found, f"{path} never reached {fake.address}"
    return found[-1]


def unique(name):
    return f"/{name}/{uuid.uuid4().hex}"


def raw_connect(proxy, authority):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("CONNECT", authority, headers={"Host": authority})
    response = conn.getresponse()
    body = b"" if response.status == 200 else response.read()  # a tunnel has no body
    conn.close()
    return response.status, body


def tls_tunnel(proxy, host):
    """A TLS socket to `host` through a CONNECT tunnel, verified against the proxy's CA."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(1024)
        assert chunk, f"proxy closed the CONNECT: {reply!r}"
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply
    context = ssl.create_default_context(cafile=proxy.ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(sock, server_hostname=host)


# -- allowlist ---------------------------------------------------------------------------------


def test_connect_to_a_host_off_the_allowlist_is_refused_with_403(proxy):
    status, body = raw_connect(proxy, "evil.example.com:443")
    assert status == 403
    assert b"not on the allowlist" in body
    assert "refused CONNECT evil.example.com: host not on the allowlist" in proxy.output()


def test_plain_http_to_a_host_off_the_allowlist_is_refused_with_403(proxy, fakes):
    path = unique("plain")
    response = via(proxy).get(f"http://not-allowed.example.org{path}")
    assert response.status_code == 403
    assert "refused GET not-allowed.example.org: host not on the allowlist" in proxy.output()


def test_a_routed_host_still_needs_the_allowlist(proxy, fakes):
    status, _ = raw_connect(proxy, "evil.example.com:443")
    assert status == 403
    response = via(proxy).get(f"http://evil.example.com{unique('routed')}")
    assert response.status_code == 403
    assert fakes["evil.example.com"].requests == []


def test_the_host_header_inside_an_allowed_tunnel_is_checked_again(proxy, fakes):
    conn = tls_tunnel(proxy, "api.openai.com")
    conn.sendall(b"GET /smuggled HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := conn.recv(4096):
        reply += chunk
    conn.close()
    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
    assert b"Host header evil.example.com not on the allowlist" in reply
    assert fakes["evil.example.com"].requests == []
    assert not [r for r in fakes["api.openai.com"].requests if r.path == "/smuggled"]


def test_wildcard_domain_allows_the_domain_and_its_subdomains_only(proxy):
    assert raw_connect(proxy, "a.b.wild.test:443")[0] == 200
    assert raw_connect(proxy, "wild.test:443")[0] == 200
    assert raw_connect(proxy, "notwild.test:443")[0] == 403
    assert raw_connect(proxy, "wild.test.evil.com:443")[0] == 403


# -- secrets -----------------------------------------------------------------------------------


def test_bearer_placeholder_becomes_the_real_key_in_authorization(proxy, fakes):
    path = unique("v1/responses")
    response = via(proxy).post(
        f"https://api.openai.com{path}", json={"model": "m"}, headers={"Authorization": "Bearer OPENAI_API_KEY"}
    )
    assert response.status_code == 200
    assert response.json()["host"] == "api.openai.com", "the fake sees the real Host"
    seen = sent(fakes["api.openai.com"], path)
    assert seen.header("Authorization") == [f"Bearer {REAL['OPENAI_API_KEY']}"]
    assert b"OPENAI_API_KEY" not in seen.raw(), "the placeholder never reaches the upstream"


def test_x_api_key_placeholder_becomes_the_real_key(proxy, fakes):
    path = unique("v1/messages")
    response = via(proxy).post(f"https://api.anthropic.com{path}", json={}, headers={"X-Api-Key": "ANTHROPIC_API_KEY"})
    assert response.status_code == 200
    seen = sent(fakes["api.anthropic.com"], path)
    assert seen.header("x-api-key") == [REAL["ANTHROPIC_API_KEY"]]
    assert b"ANTHROPIC_API_KEY" not in seen.raw()


@pytest.mark.parametrize("host", ["github.com", "api.github.com"])
def test_basic_auth_payload_is_decoded_replaced_and_reencoded(proxy, fakes, host):
    path = unique("owner/name.git/info/refs")
    placeholder = base64.b64encode(b"x-access-token:GITHUB_TOKEN").decode()
    response = via(proxy).get(f"https://{host}{path}", headers={"Authorization": f"Basic {placeholder}"})
    assert response.status_code == 200
    seen = sent(fakes[host], path)
    (auth,) = seen.header("Authorization")
    assert auth.startswith("Basic ")
    assert base64.b64decode(auth[6:]).decode() == f"x-access-token:{REAL['GITHUB_TOKEN']}"
    assert b"GITHUB_TOKEN" not in base64.b64decode(auth[6:])


def test_a_placeholder_sent_to_another_allowed_host_is_not_swapped(proxy, fakes):
    path = unique("wrong-host")
    via(proxy).post(f"https://api.anthropic.com{path}", json={}, headers={
        "Authorization": "Bearer OPENAI_API_KEY", "X-Api-Key": "GITHUB_TOKEN",
    })
    seen = sent(fakes["api.anthropic.com"], path)
    assert seen.header("Authorization") == ["Bearer OPENAI_API_KEY"]
    assert seen.header("X-Api-Key") == ["GITHUB_TOKEN"]
    for value in REAL.values():
        assert value.encode() not in seen.raw()


def test_only_the_listed_headers_are_swapped(proxy, fakes):
    path = unique("other-header")
    via(proxy).get(f"https://api.openai.com{path}", headers={
        "Authorization": "Bearer OPENAI_API_KEY", "X-Debug": "OPENAI_API_KEY",
    })
    seen = sent(fakes["api.openai.com"], path)
    assert seen.header("Authorization") == [f"Bearer {REAL['OPENAI_API_KEY']}"]
    assert seen.header("X-Debug") == ["OPENAI_API_KEY"]


def test_a_secret_is_never_sent_over_plain_http(proxy, fakes):
    path = unique("cleartext")
    response = via(proxy).get(f"http://api.openai.com{path}", headers={"Authorization": "Bearer OPENAI_API_KEY"})
    assert response.status_code == 200
    assert sent(fakes["api.openai.com"], path).header("Authorization") == ["Bearer OPENAI_API_KEY"]


def test_websocket_handshake_gets_the_real_key_and_frames_flow(proxy, fakes):
    path = unique("v1/responses-ws")
    conn = tls_tunnel(proxy, "api.openai.com")
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall(
        f"GET {path} HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer OPENAI_API_KEY\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    conn.sendall(ws_frame(0x1, b"hello"))
    assert read_ws_frame(conn) == (0x1, b"echo:hello")
    conn.sendall(ws_frame(0x8, b""))
    conn.close()
    seen = sent(fakes["api.openai.com"], path)
    assert seen.header("Authorization") == [f"Bearer {REAL['OPENAI_API_KEY']}"]


def test_an_event_stream_is_passed_on_as_it_arrives(proxy, fakes):
    """SSE from a model API reaches the client before the upstream has finished."""
    stream = fakes["streaming.test"]
    stream.release.clear()
    response = via(proxy).get("https://streaming.test/v1/stream", stream=True, timeout=10)
    try:
        lines = response.iter_lines()
        assert next(lines) == b"data: first"  # would block until `release` if the proxy buffered
    finally:
        stream.release.set()
    assert b"data: last" in list(lines)


def test_no_secret_value_is_ever_logged(proxy):
    # Runs after the swaps above (module order); the proxy's whole log so far.
    output = proxy.output()
    assert "centaur_egress: loaded" in output
    for value in REAL.values():
        assert value not in output


class StreamingServer:
    """Plain HTTP: sends `data: first`, then waits for `release` before `data: last`."""

    def __init__(self):
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk(b"data: first\n\n")
                server.release.wait(timeout=10)
                self._chunk(b"data: last\n\n")
                self._chunk(b"")

            def _chunk(self, data):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
