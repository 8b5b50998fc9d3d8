"""Scripted fake model APIs, close enough for the real harness CLIs: OpenAI Responses
(streaming SSE over HTTPS, and the Responses WebSocket mode codex tries first) and Anthropic
Messages (streaming SSE, what Claude Code and pi use).

The fakes sit behind the egress proxy, which routes the real hostnames (api.openai.com,
api.anthropic.com) to them over plain HTTP. Each fake is told the REAL key the proxy holds:
a model request that does not carry it (the placeholder, or nothing) is answered 401 and
recorded as a violation, so a test sees at once that the swap did not happen."""
import base64
import hashlib
import http.server
import json
import struct
import threading

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PLACEHOLDERS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class Script:
    """What the fake answers: mode 'text' (an answer), 'tool' (a tool call, then an answer
    once the tool result comes back) or 'error' (HTTP 500 on every model call).
    `websocket` (OpenAI): serve the Responses WebSocket mode (as api.openai.com does) or
    answer the upgrade like a server without it (404)."""

    def __init__(self):
        self.mode = "text"
        self.answer = "PONG"
        self.tool_command = "echo centaur-tool-ran"
        self.websocket = True
        self.requests = []  # model requests: {"path", "credential", "transport", "body"}
        self.credentials = []  # the credential header of every request that arrived
        self.violations = []  # model requests without the real key
        self.websocket_upgrades = 0


def _credential(kind, headers):
    if kind == "openai":
        return headers.get("authorization")
    return headers.get("x-api-key")


class FakeModelServer:
    """FakeModelServer(kind, real_key): `kind` 'openai' or 'anthropic'; `.address` is the
    route target ("127.0.0.1:PORT"); `.script` what it answers and what it saw."""

    def __init__(self, kind, real_key):
        self.kind = kind
        self.real_key = real_key
        self.expected = f"Bearer {real_key}" if kind == "openai" else real_key
        self.script = Script()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                credential = server._saw(self.headers)
                is_upgrade = self.headers.get("upgrade", "").lower() == "websocket"
                if is_upgrade and server.kind == "openai" and self.path.startswith("/v1/responses"):
                    with server.lock:
                        server.script.websocket_upgrades += 1
                    if not server.script.websocket:
                        return self._json(404, {"error": {"message": "Not Found", "type": "invalid_request_error"}})
                    if not server._authorized(credential, self.path, "websocket"):
                        return self._json(401, server._unauthorized())
                    return self._websocket(credential)
                self._json(404, {"error": {"message": "Not Found"}})

            def do_POST(self):
                credential = server._saw(self.headers)
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if not self.path.startswith("/v1/"):
                    # Claude Code's side calls (settings, telemetry): not model requests.
                    return self._json(404, {"error": {"message": "Not Found"}})
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                if not server._authorized(credential, self.path, "https", body):
                    return self._json(401, server._unauthorized())
                if server.script.mode == "error":
                    return self._json(500, server._server_error(), {"x-should-retry": "false"})
                if not body.get("stream"):
                    return self._json(200, server._non_stream(body))
                events = server._events(body)
                data = "".join(f"event: {name}\ndata: {json.dumps(event)}\n\n" for name, event in events).encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _websocket(self, credential):
                """The Responses WebSocket mode: each `response.create` message is answered
                with the same events the SSE stream carries, one JSON text frame each."""
                accept = base64.b64encode(hashlib.sha1(self.headers["sec-websocket-key"].encode() + WS_GUID).digest())
                self.send_response(101)
                self.send_header("upgrade", "websocket")
                self.send_header("connection", "Upgrade")
                self.send_header("sec-websocket-accept", accept.decode())
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                while True:
                    message = read_message(self.rfile, self.wfile)
                    if message is None:
                        return
                    try:
                        request = json.loads(message)
                    except ValueError:
                        continue
                    if request.get("type") != "response.create":
                        continue
                    body = {k: v for k, v in request.items() if k != "type"}
                    server._record(credential, self.path, "websocket", body)
                    if server.script.mode == "error":
                        # A failed response over WebSocket is an `error` event with its status.
                        events = [dict(server._server_error(), type="error", status=500)]
                    else:
                        events = [event for _, event in server._openai_events(body)]
                    for event in events:
                        self.wfile.write(frame(0x1, json.dumps(event).encode()))
                    self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reset(self):
        with self.lock:
            self.script = Script()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- credentials --------------------------------------------------------------------
    def _saw(self, headers):
        credential = _credential(self.kind, headers)
        with self.lock:
            self.script.credentials.append(credential)
        return credential

    def _record(self, credential, path, transport, body):
        with self.lock:
            self.script.requests.append({"path": path, "credential": credential, "transport": transport, "body": body})

    def _authorized(self, credential, path, transport, body=None):
        if credential == self.expected:
            if transport == "https":
                self._record(credential, path, transport, body)
            return True
        with self.lock:
            self.script.violations.append({"path": path, "credential": credential, "transport": transport})
        return False

    def placeholder_seen(self):
        """True if the placeholder ever arrived in the credential header."""
        placeholder = PLACEHOLDERS[self.kind]
        return any(c and placeholder in c for c in self.script.credentials)

    def _unauthorized(self):
        if self.kind == "openai":
            return {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}
        return {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}

    def _server_error(self):
        if self.kind == "openai":
            return {"error": {"message": "The server had an error processing your request (500)", "type": "server_error"}}
        return {"type": "error", "error": {"type": "api_error", "message": "upstream exploded (500)"}}

    # --- Anthropic Messages -------------------------------------------------------------
    def _tool_result_sent(self, body):
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        content = last.get("content") if isinstance(last, dict) else None
        return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)

    def _non_stream(self, body):
        return {"id": "msg_side", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1}}

    def _events(self, body):
        if self.kind == "openai":
            return self._openai_events(body)
        wants_tool = self.script.mode == "tool" and not self._tool_result_sent(body)
        start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                 "model": body.get("model"), "content": [], "stop_reason": None,
                 "usage": {"input_tokens": 21, "output_tokens": 1}}}
        if wants_tool:
            tool = self._anthropic_tool_name(body)
            block = {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}
            return [("message_start", start),
                    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                     "delta": {"type": "input_json_delta", "partial_json": json.dumps({"command": self.script.tool_command})}}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                     "usage": {"output_tokens": 9}}),
                    ("message_stop", {"type": "message_stop"})]
        return [("message_start", start),
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": self.script.answer}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": 5}}),
                ("message_stop", {"type": "message_stop"})]

    def _anthropic_tool_name(self, body):
        names = [t.get("name") for t in body.get("tools", [])]
        for candidate in ("Bash", "bash"):
            if candidate in names:
                return candidate
        return names[0] if names else "Bash"

    # --- OpenAI Responses ---------------------------------------------------------------
    def _openai_tool_output_sent(self, body):
        return any(isinstance(i, dict) and i.get("type") in ("custom_tool_call_output", "function_call_output")
                   for i in body.get("input", []))

    def _openai_tool_call(self, body):
        """Codex's tools are nested in its `exec` (JavaScript) tool: call `exec_command` there."""
        code = f'const r = await tools.exec_command({{cmd: {json.dumps(self.script.tool_command)}}}); text(r);'
        item = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "exec", "input": code,
                "status": "completed"}
        response = {"id": "resp_t", "object": "response", "status": "in_progress", "model": body.get("model"), "output": []}
        done = dict(response, status="completed", output=[item],
                    usage={"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0},
                           "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 42})
        return [("response.created", {"type": "response.created", "sequence_number": 0, "response": response}),
                ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1,
                 "output_index": 0, "item": dict(item, status="in_progress", input="")}),
                ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 2,
                 "output_index": 0, "item": item}),
                ("response.completed", {"type": "response.completed", "sequence_number": 3, "response": done})]

    def _openai_events(self, body):
        if self.script.mode == "tool" and not self._openai_tool_output_sent(body):
            return self._openai_tool_call(body)
        text = self.script.answer
        message = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        response = {"id": "resp_1", "object": "response", "status": "in_progress", "model": body.get("model"), "output": []}
        done = dict(response, status="completed", output=[message],
                    usage={"input_tokens": 21, "input_tokens_details": {"cached_tokens": 0},
                           "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 26})
        return [("response.created", {"type": "response.created", "sequence_number": 0, "response": response}),
                ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                 "item": dict(message, status="in_progress", content=[])}),
                ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
                 "output_index": 0, "content_index": 0, "delta": text}),
                ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": message}),
                ("response.completed", {"type": "response.completed", "sequence_number": 4, "response": done})]


# --- WebSocket frames (RFC 6455), server side ----------------------------------------------
def frame(opcode, payload):
    """One final, unmasked frame (a server's)."""
    head = bytes([0x80 | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([length])
    elif length < 1 << 16:
        head += bytes([126]) + struct.pack("!H", length)
    else:
        head += bytes([127]) + struct.pack("!Q", length)
    return head + payload


def _read_exact(rfile, n):
    data = rfile.read(n)
    return data if data is not None and len(data) == n else None


def read_message(rfile, wfile):
    """The next text/binary message from the client (fragments joined, pings answered),
    or None once the client closes or the connection ends."""
    parts = []
    while True:
        head = _read_exact(rfile, 2)
        if head is None:
            return None
        fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            raw = _read_exact(rfile, 2)
            length = struct.unpack("!H", raw)[0] if raw else 0
        elif length == 127:
            raw = _read_exact(rfile, 8)
            length = struct.unpack("!Q", raw)[0] if raw else 0
        key = _read_exact(rfile, 4) if head[1] & 0x80 else None
        payload = _read_exact(rfile, length) if length else b""
        if payload is None:
            return None
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        if opcode == 0x8:
            wfile.write(frame(0x8, payload[:2]))
            wfile.flush()
            return None
        if opcode == 0x9:
            wfile.write(frame(0xA, payload))
            wfile.flush()
            continue
        if opcode == 0xA:
            continue
        parts.append(payload)
        if fin:
            return b"".join(parts)
