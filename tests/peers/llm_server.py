"""A scripted loopback LLM server speaking the OpenAI and Anthropic wire formats.

aimock (see ``aimock.py``) matches requests against fixtures; this server is for what
it cannot do deterministically: errors with chosen headers (``Retry-After``), a stream
cut at an exact point, a request that hangs, and replies that depend on nothing but
their position in the script. Standard library only, so it runs wherever the tests do.

Every ``POST .../chat/completions`` (OpenAI) or ``POST .../v1/messages`` (Anthropic)
consumes the next scripted step, and the reply follows the wire format of the endpoint
that was hit::

    with ScriptedLLM([
        Error(429, headers={"Retry-After": "1"}),
        Reply(tool_calls=[("get_weather", {"city": "Paris"})], usage=(30, 7)),
        Reply("It is sunny in Paris."),
    ]) as llm:
        client = openai.OpenAI(base_url=llm.openai_base_url, api_key="test")
        ...
        assert llm.requests[1].time - llm.requests[0].time >= 1.0

Steps:

- ``Reply(text, tool_calls=[(name, args), ...], usage=(input, output))``: JSON, or SSE
  when the request says ``"stream": true``. Tool call ids are deterministic:
  ``call_<n>_<i>`` (OpenAI) and ``toolu_<n>_<i>`` (Anthropic), ``n`` the 1-based number
  of the request, ``i`` the index of the call in the reply. OpenAI streams end with a
  usage chunk only when the request asked for ``stream_options.include_usage``, as
  the real API does.
- ``Error(status, body=None, headers={})``: the API's own error JSON for that status
  unless ``body`` is given (a dict is sent as JSON, str/bytes as they are).
- ``CutStream(after_chunks=N)``: sends the first N SSE events of ``reply`` and closes
  the connection without ending the chunked body, so the SDK raises while iterating.
  A non-streaming request gets half of its JSON body and the same abrupt close.
- ``Hang(seconds, then=None)``: reads the request, waits, then serves ``then`` or closes
  the connection without an answer. ``stop()`` ends the wait at once.
- A callable ``(RecordedRequest) -> step`` decides at request time.

When the script is exhausted the server answers 500 with "no scripted step left", in
the API's error shape, so a test that makes one call too many fails loudly. A request
without ``model``/``messages`` (or, for Anthropic, ``max_tokens``) gets 400 like the
real APIs, and consumes no step. Other paths get 404 and consume no step either.

Remember that both SDKs retry 408/409/429/5xx and connection errors (2 retries by
default), and every retry consumes a step: pass ``max_retries=0`` unless the retry is
what the test is about.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeAlias

from .daemons import Daemon

__all__ = [
    "CutStream",
    "Error",
    "Hang",
    "RecordedRequest",
    "Reply",
    "ScriptedLLM",
    "Step",
]

Api: TypeAlias = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Reply:
    """An assistant turn: text, tool calls, or both (text first).

    ``finish_reason`` uses OpenAI's words (``stop``, ``tool_calls``, ``length``); for
    Anthropic they become ``end_turn``, ``tool_use``, ``max_tokens``. By default it is
    ``tool_calls`` when there are tool calls, else ``stop``. ``chunk_size`` is how many
    characters each streamed text or argument delta carries; ``chunk_delay`` pauses
    between SSE events (for cancellation tests).
    """

    text: str | None = None
    tool_calls: Sequence[tuple[str, Mapping[str, Any]]] = ()
    usage: tuple[int, int] = (10, 5)
    finish_reason: str | None = None
    model: str | None = None
    chunk_size: int = 8
    chunk_delay: float = 0.0
    #: Streamed before the text as OpenRouter's ``delta.reasoning`` (OpenAI wire only).
    reasoning: str = ""


@dataclass(frozen=True)
class Error:
    """An HTTP error answer; ``message`` replaces the default message of the error JSON."""

    status: int
    body: Mapping[str, Any] | str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None


@dataclass(frozen=True)
class CutStream:
    """Send ``after_chunks`` SSE events of ``reply``, then drop the connection."""

    after_chunks: int = 2
    reply: Reply = Reply(text="This reply is going to be cut off long before it ends.")


@dataclass(frozen=True)
class Hang:
    """Accept the request and answer nothing for ``seconds`` (then serve ``then``)."""

    seconds: float
    then: Reply | Error | None = None


Step: TypeAlias = Reply | Error | CutStream | Hang


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``time`` is ``time.monotonic()`` at arrival."""

    number: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    time: float
    api: Api | None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def messages(self) -> list[Any]:
        """The request's ``messages`` (empty when the body has none)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []


StepSource: TypeAlias = Step | Callable[[RecordedRequest], Step]

# Error types as each API names them, by status.
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: test."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "model: not found"),
    408: ("timeout_error", "Request timed out."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def error_body(api: Api, status: int, message: str | None = None, model: str = "") -> Any:
    """The JSON body each API sends for an error of ``status``."""
    if api == "openai":
        kind, code, default = _OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
        )
        if status == 404 and model and message is None:
            default = f"The model `{model}` does not exist or you do not have access to it."
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}
    kind, default = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
    )
    if status == 404 and model and message is None:
        default = f"model: {model}"
    return {"type": "error", "error": {"type": kind, "message": message or default}}


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _finish(reply: Reply) -> str:
    if reply.finish_reason:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _openai_tool_calls(reply: Reply, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{n}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(dict(args))},
        }
        for i, (name, args) in enumerate(reply.tool_calls)
    ]


def openai_completion(reply: Reply, model: str, n: int) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.text is None and not reply.tool_calls:
        message["content"] = ""
    if reply.tool_calls:
        message["tool_calls"] = _openai_tool_calls(reply, n)
    tokens_in, tokens_out = reply.usage
    return {
        "id": f"chatcmpl-scripted-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
        "system_fingerprint": None,
    }


def openai_events(reply: Reply, model: str, n: int, include_usage: bool) -> list[bytes]:
    """The SSE events of a streamed chat completion, ``[DONE]`` included."""
    base = {
        "id": f"chatcmpl-scripted-{n}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model or model,
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = dict(base)
        data["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if include_usage:
            data["usage"] = None
        return data

    has_text = reply.text is not None or not reply.tool_calls
    chunks = [chunk({"role": "assistant", "content": "" if has_text else None, "refusal": None})]
    if reply.reasoning:
        chunks += [chunk({"reasoning": p}) for p in _pieces(reply.reasoning, reply.chunk_size)]
    if reply.text:
        chunks += [chunk({"content": piece}) for piece in _pieces(reply.text, reply.chunk_size)]
    for i, call in enumerate(_openai_tool_calls(reply, n)):
        head = {"index": i, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(chunk({"tool_calls": [head]}))
        for piece in _pieces(call["function"]["arguments"], reply.chunk_size):
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, _finish(reply)))
    if include_usage:
        tokens_in, tokens_out = reply.usage
        last = dict(base)
        last["choices"] = []
        last["usage"] = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        chunks.append(last)
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    events.append(b"data: [DONE]\n\n")
    return events


def _anthropic_blocks(reply: Reply, n: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text or ""})
    for i, (name, args) in enumerate(reply.tool_calls):
        blocks.append({"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name, "input": args})
    return blocks


def _anthropic_usage(tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def anthropic_message(reply: Reply, model: str, n: int) -> dict[str, Any]:
    """A Messages API ``message`` object."""
    finish = _finish(reply)
    return {
        "id": f"msg_scripted_{n}",
        "type": "message",
        "role": "assistant",
        "model": reply.model or model,
        "content": _anthropic_blocks(reply, n),
        "stop_reason": _ANTHROPIC_STOP.get(finish, finish),
        "stop_sequence": None,
        "usage": _anthropic_usage(*reply.usage),
    }


def anthropic_events(reply: Reply, model: str, n: int) -> list[bytes]:
    """The SSE events of a streamed message, from message_start to message_stop."""
    tokens_in, tokens_out = reply.usage
    start = anthropic_message(reply, model, n)
    start.update(content=[], stop_reason=None, usage=_anthropic_usage(tokens_in, 1))
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(_anthropic_blocks(reply, n)):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": p} for p in _pieces(block["text"], reply.chunk_size)
            ]
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = json.dumps(dict(block["input"]))
            deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(arguments, reply.chunk_size)
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    finish = _finish(reply)
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _ANTHROPIC_STOP.get(finish, finish), "stop_sequence": None},
            "usage": {"output_tokens": tokens_out},
        }
    )
    events.append({"type": "message_stop"})
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    llm: ScriptedLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; the requests are in ``ScriptedLLM.requests``."""

    def setup(self) -> None:
        super().setup()
        self.server.llm._connections_opened(self.connection)

    def finish(self) -> None:
        self.server.llm._connections_closed(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    # -- request handling ---------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._serve_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def _serve_request(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        api: Api | None = None
        if self.command == "POST" and path.endswith("/chat/completions"):
            api = "openai"
        elif self.command == "POST" and path.endswith("/v1/messages"):
            api = "anthropic"
        llm = self.server.llm
        request, step = llm._take(self.command, self.path, dict(self.headers), body, raw, api)
        if api is None:
            self._send_json(404, {"error": {"message": f"no such endpoint: {self.command} {path}"}})
            return
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        problem = _invalid(api, body)
        if problem:
            self._send_error(api, request, Error(400, message=problem), model)
            return
        if step is None:
            message = (
                f"ScriptedLLM: no scripted step left ({llm.scripted} were scripted; this is "
                f"request #{request.number}: {self.command} {path})"
            )
            self._send_error(api, request, Error(500, message=message), model)
            return
        if callable(step):
            step = step(request)
        self._run(api, request, step, model)

    def _run(self, api: Api, request: RecordedRequest, step: Step, model: str) -> None:
        if isinstance(step, Hang):
            stopped = self.server.llm._stopping.wait(step.seconds)
            if stopped or step.then is None:
                self._drop()
                return
            step = step.then
        if isinstance(step, Error):
            self._send_error(api, request, step, model)
        elif isinstance(step, Reply):
            self._send_reply(api, request, step, model)
        elif isinstance(step, CutStream):
            self._send_cut(api, request, step, model)
        else:
            raise TypeError(f"not a ScriptedLLM step: {step!r}")

    # -- answers ------------------------------------------------------------------

    def _request_id_header(self, api: Api, request: RecordedRequest) -> dict[str, str]:
        name = "x-request-id" if api == "openai" else "request-id"
        return {name: f"req_scripted_{request.number}"}

    def _send_error(self, api: Api, request: RecordedRequest, step: Error, model: str) -> None:
        headers = self._request_id_header(api, request)
        headers.update(step.headers)
        body = step.body
        if body is None:
            body = error_body(api, step.status, step.message, model)
            if api == "anthropic":
                body["request_id"] = f"req_scripted_{request.number}"
        if isinstance(body, Mapping):
            self._send_json(step.status, dict(body), headers)
        else:
            data = body.encode() if isinstance(body, str) else body
            self._send_bytes(step.status, data, "text/plain; charset=utf-8", headers)

    def _send_reply(self, api: Api, request: RecordedRequest, reply: Reply, model: str) -> None:
        headers = self._request_id_header(api, request)
        if not request.stream:
            if api == "openai":
                self._send_json(200, openai_completion(reply, model, request.number), headers)
            else:
                self._send_json(200, anthropic_message(reply, model, request.number), headers)
            return
        events = self._events(api, request, reply, model)
        self._start_sse(headers)
        for i, event in enumerate(events):
            if i and reply.chunk_delay and self.server.llm._stopping.wait(reply.chunk_delay):
                self._drop()
                return
            self._write_chunk(event)
        self.wfile.write(b"0\r\n\r\n")

    def _send_cut(self, api: Api, request: RecordedRequest, step: CutStream, model: str) -> None:
        headers = self._request_id_header(api, request)
        if not request.stream:
            if api == "openai":
                obj = openai_completion(step.reply, model, request.number)
            else:
                obj = anthropic_message(step.reply, model, request.number)
            data = json.dumps(obj).encode()
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._drop()
            return
        events = self._events(api, request, step.reply, model)
        self._start_sse(headers)
        for event in events[: step.after_chunks]:
            self._write_chunk(event)
        self._drop()

    def _events(self, api: Api, request: RecordedRequest, reply: Reply, model: str) -> list[bytes]:
        if api == "anthropic":
            return anthropic_events(reply, model, request.number)
        options = request.body.get("stream_options") if isinstance(request.body, dict) else None
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return openai_events(reply, model, request.number, include_usage)

    # -- HTTP plumbing -------------------------------------------------------------

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers or {})

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]
    ) -> None:
        self.send_response(status, _reason(status))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self, headers: Mapping[str, str]) -> None:
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection now, without ending the response properly."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _invalid(api: Api, body: Any) -> str | None:
    """What the real API would reject with 400 before looking at the conversation."""
    if not isinstance(body, dict):
        return "The request body is not a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    if not isinstance(body.get("messages"), list):
        return "messages: field required"
    if api == "anthropic" and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: field required"
    return None


class ScriptedLLM(Daemon):
    """A loopback HTTP server that answers LLM requests from a script of steps."""

    def __init__(self, steps: Iterable[StepSource] = (), *, host: str = "127.0.0.1") -> None:
        self._steps: deque[StepSource] = deque(steps)
        self._given = len(self._steps)
        self._host = host
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> ScriptedLLM:
        if self._server is not None:
            return self
        server = _Server((self._host, 0), _Handler)
        server.llm = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"ScriptedLLM:{server.server_address[1]}"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end hanging requests and close open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- what tests use -----------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("ScriptedLLM is not running: use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """For ``openai.OpenAI(base_url=...)``: the SDK appends ``/chat/completions``."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.Anthropic(base_url=...)``: the SDK appends ``/v1/messages``."""
        return self.url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def scripted(self) -> int:
        """How many steps were scripted in all (consumed or not)."""
        with self._lock:
            return self._given

    @property
    def remaining(self) -> int:
        """How many scripted steps have not been consumed yet."""
        with self._lock:
            return len(self._steps)

    def add(self, *steps: StepSource) -> None:
        """Append steps to the script (also while the server runs)."""
        with self._lock:
            self._steps.extend(steps)
            self._given += len(steps)

    # -- called by the handler threads --------------------------------------------

    def _take(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        raw: bytes,
        api: Api | None,
    ) -> tuple[RecordedRequest, StepSource | None]:
        """Record a request and, for a valid LLM call, pop the next step."""
        arrived = time.monotonic()
        with self._lock:
            request = RecordedRequest(
                number=len(self._requests) + 1,
                method=method,
                path=path,
                headers={k.lower(): v for k, v in headers.items()},
                body=body,
                raw=raw,
                time=arrived,
                api=api,
            )
            self._requests.append(request)
            step: StepSource | None = None
            if api is not None and _invalid(api, body) is None and self._steps:
                step = self._steps.popleft()
            return request, step

    def _connections_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _connections_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
