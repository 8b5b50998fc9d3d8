"""Scripted fake model APIs on localhost, close enough for the real harness CLIs:
OpenAI Responses (streaming SSE, what Codex uses) and Anthropic Messages (streaming SSE,
what Claude Code and pi use). Each records the credential headers it received so a test
can assert the CLI sent the placeholder, never a real key."""
import http.server
import json
import threading

PLACEHOLDERS = {"openai": "Bearer OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class Script:
    """What the fake answers: 'text' (an answer), 'tool' (a tool call, then an answer once
    the tool result comes back) or 'error' (HTTP 500 on every call)."""

    def __init__(self):
        self.mode = "text"
        self.answer = "PONG"
        self.tool_command = "echo centaur-tool-ran"
        self.requests = []


class FakeModelServer:
    def __init__(self, kind):
        self.kind = kind
        self.script = Script()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                server.script.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("authorization"),
                        "x-api-key": self.headers.get("x-api-key"),
                        "body": body,
                    }
                )
                if server.script.mode == "error":
                    payload = json.dumps({"type": "error", "error": {"type": "api_error", "message": "upstream exploded (500)"}}).encode()
                    self.send_response(500)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if not body.get("stream"):
                    self._json(server._non_stream(body))
                    return
                events = server._events(body)
                data = "".join(f"event: {name}\ndata: {json.dumps(event)}\n\n" for name, event in events).encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()

    def credentials_seen(self):
        header = "authorization" if self.kind == "openai" else "x-api-key"
        return {r[header] for r in self.script.requests}

    # --- Anthropic Messages -------------------------------------------------------------
    def _tool_result_sent(self, body):
        messages = body.get("messages") or body.get("input") or []
        last = messages[-1] if messages else {}
        content = last.get("content") if isinstance(last, dict) else None
        if isinstance(content, list):
            return any(isinstance(b, dict) and b.get("type") in ("tool_result", "function_call_output") for b in content)
        return isinstance(last, dict) and last.get("type") in ("function_call_output", "custom_tool_call_output")

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
