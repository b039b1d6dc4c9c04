"""A fake OpenAI-compatible chat-completions server, for tests and for local use.

It listens on 127.0.0.1 (a random port by default) in a background thread and speaks
``POST /v1/chat/completions``: the answer is ``choices[0].message.content`` = the JSON
``{"label": ...}``, with a ``usage`` field (about four characters a token).

What it answers for an item (the last user message as the teacher client writes it,
``workers.teacher.openai_client.user_prompt``: a header line, then the item as one JSON
string, which it decodes; a message not in that form is taken whole):

- a script: ``server.script("item-7", status(429), label("billing"))`` — calls whose item
  text contains ``item-7`` get these replies in order, the last one repeating;
- else the default model, which is gullible on purpose: it obeys a ``"label": "X"`` written
  in the item text (an injection attempt), else answers ``X`` for ``expect:X`` in the text,
  else the first label of the request's enum (or of the system prompt's list).

``server.outage(seconds, mode="drop"|"503")`` takes it down for a while: ``drop`` closes
every connection without a reply (a connection error), ``503`` answers Service Unavailable.
``reject_response_format=True`` makes it refuse ``response_format`` with HTTP 400.

Local use: ``python -m workers.sim.fake_teacher --port 8000`` then
``DISTILLERY_TEACHER_BASE_URL=http://127.0.0.1:8000/v1``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_INJECTED = re.compile(r'"label"\s*:\s*"([^"]+)"')
_EXPECT = re.compile(r"expect:([A-Za-z0-9_-]+)")
_LISTED = re.compile(r"^- ([A-Za-z0-9_-]+)", re.MULTILINE)


@dataclass(frozen=True)
class Reply:
    """One scripted reply: an HTTP status, a label or raw content, a delay, or a drop."""

    status: int = 200
    label: str | None = None
    content: str | None = None
    delay_s: float = 0.0
    retry_after_s: float | None = None
    drop: bool = False


def label(name: str, delay_s: float = 0.0) -> Reply:
    return Reply(label=name, delay_s=delay_s)


def status(code: int, retry_after_s: float | None = None) -> Reply:
    return Reply(status=code, retry_after_s=retry_after_s)


def slow(delay_s: float, name: str | None = None) -> Reply:
    return Reply(label=name, delay_s=delay_s)


def raw(content: str) -> Reply:
    return Reply(content=content)


@dataclass(frozen=True)
class Call:
    item: str
    status: int
    answer: str | None
    structured: bool


def item_of(content: str) -> str:
    """The item text of a user message: the JSON string after its first line (what
    ``user_prompt`` writes), else the whole message."""
    _, _, rest = content.partition("\n")
    try:
        value = json.loads(rest)
    except ValueError:
        return content
    return value if isinstance(value, str) else content


def gullible_answer(item: str, labels: list[str]) -> str:
    for pattern in (_INJECTED, _EXPECT):
        found = pattern.search(item)
        if found:
            return found.group(1)
    return labels[0] if labels else "ok"


class FakeTeacherServer:
    def __init__(self, default: Callable[[str, list[str]], Reply | str] | None = None, *,
                 reject_response_format: bool = False, port: int = 0) -> None:
        self.default = default or gullible_answer
        self.reject_response_format = reject_response_format
        self.calls: list[Call] = []
        self.bodies: list[bytes] = []  # every request body as it came, for what left a worker
        self.auth: set[str] = set()  # the Authorization headers seen
        self._scripts: list[tuple[str, list[Reply]]] = []
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_mode = "drop"
        self._http = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- control ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeTeacherServer:
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True,
                                        name="fake-teacher")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> FakeTeacherServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, match: str, *replies: Reply | str) -> None:
        """Calls whose item contains ``match`` get ``replies`` in order (the last repeats)."""
        steps = [label(r) if isinstance(r, str) else r for r in replies]
        with self._lock:
            self._scripts.append((match, steps))

    def outage(self, seconds: float, mode: str = "drop") -> None:
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self._down_mode = mode

    def calls_for(self, match: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if match in c.item]

    # --- answering -------------------------------------------------------------------
    def plan(self, body: dict[str, Any]) -> tuple[Reply, str]:
        """The reply to one request body, and the item it was about."""
        messages = body.get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
        item = item_of(last)
        with self._lock:
            if time.monotonic() < self._down_until:
                mode = self._down_mode
                return (Reply(drop=True) if mode == "drop" else status(503)), item
            if self.reject_response_format and "response_format" in body:
                return Reply(status=400, content="response_format is not supported"), item
            for match, steps in self._scripts:
                if match in item:
                    step = steps.pop(0) if len(steps) > 1 else steps[0]
                    return step, item
        answer = self.default(item, _labels_of(body))
        return (label(answer) if isinstance(answer, str) else answer), item

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


def _labels_of(body: dict[str, Any]) -> list[str]:
    try:
        schema = body["response_format"]["json_schema"]["schema"]
        return list(schema["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        pass
    messages = body.get("messages") or []
    system = str(messages[0].get("content", "")) if messages else ""
    return _LISTED.findall(system)


def completion(content: str, body: dict[str, Any]) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [])
    tokens_in, tokens_out = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                  "total_tokens": tokens_in + tokens_out},
    }


def _handler_for(server: FakeTeacherServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            with server._lock:
                server.bodies.append(data)
                server.auth.add(self.headers.get("Authorization") or "")
            try:
                body = json.loads(data or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            reply, item = server.plan(body)
            structured = "response_format" in body
            server.record(Call(item, 0 if reply.drop else reply.status, reply.label, structured))
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.drop:
                self.close_connection = True
                self.connection.close()
                return
            if reply.status != 200:
                headers = ({"Retry-After": str(reply.retry_after_s)}
                           if reply.retry_after_s is not None else {})
                message = reply.content or f"scripted HTTP {reply.status}"
                self._send(reply.status, {"error": {"message": message}}, headers)
                return
            content = reply.content if reply.content is not None else json.dumps(
                {"label": reply.label if reply.label is not None else
                 gullible_answer(item, _labels_of(body))})
            self._send(200, completion(content, body))

        def _send(self, code: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a timeout): fine

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible teacher.")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = FakeTeacherServer(port=args.port)
    print(f"fake teacher on {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        server._http.serve_forever()
    except KeyboardInterrupt:
        server._http.server_close()


if __name__ == "__main__":
    main()
