"""A plain-HTTP server that records what reached it: the upstream the egress proxy routes a real
hostname to in tests. Answers every request with 200 and a small JSON body; answers a
WebSocket handshake with 101 and then echoes text frames until the client closes."""
import base64
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RecordedRequest:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # list of (name, value) as received
        self.body = body

    def header(self, name):
        """Every value of a header (case-insensitive)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def raw(self) -> bytes:
        """Request line, headers and body: to assert a string appears nowhere."""
        lines = [f"{self.method} {self.path}"] + [f"{k}: {v}" for k, v in self.headers]
        return "\n".join(lines).encode("latin-1", "replace") + b"\n\n" + self.body


class RecordingServer:
    """`RecordingServer()` listens on 127.0.0.1:<free port>; `.address` is "127.0.0.1:PORT" (a
    route target), `.requests` what arrived, `.wait_for(n)` polls for n requests."""

    def __init__(self, status=200, body=None):
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = read_chunked(self.rfile)
                else:
                    body = self.rfile.read(length) if length else b""
                with server.lock:
                    server.requests.append(RecordedRequest(self.command, self.path, list(self.headers.items()), body))
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    return self._websocket()
                answer = {"ok": True, "host": self.headers.get("Host"), "path": self.path}
                payload = json.dumps(answer if server.body is None else server.body).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _websocket(self):
                key = self.headers["Sec-WebSocket-Key"].encode()
                accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.end_headers()
                self.wfile.flush()
                while True:
                    frame = read_ws_frame(self.rfile)
                    if frame is None or frame[0] == 0x8:
                        self.wfile.write(ws_frame(0x8, b"", mask=False))
                        self.close_connection = True
                        return
                    if frame[0] == 0x1:
                        self.wfile.write(ws_frame(0x1, b"echo:" + frame[1], mask=False))
                        self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.status = status
        self.body = body
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait_for(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{self.address}: {len(self.requests)} requests within {timeout}s, expected {count}")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_chunked(rfile) -> bytes:
    """The body of a chunked request (trailers dropped)."""
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        body += rfile.read(size)
        rfile.readline()


def ws_frame(opcode: int, payload: bytes, mask: bool = True) -> bytes:
    """One final WebSocket frame (clients mask, servers do not)."""
    head = bytes([0x80 | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_ws_frame(stream):
    """(opcode, payload) of the next frame from a file-like object or socket, None at EOF."""
    read = stream.read if hasattr(stream, "read") else (lambda n: _recv_exact(stream, n))
    head = read(2)
    if len(head) < 2:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    masked = head[1] & 0x80
    if length == 126:
        length = struct.unpack("!H", read(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read(8))[0]
    key = read(4) if masked else None
    payload = read(length) if length else b""
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data
