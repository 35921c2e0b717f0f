"""The OpenAI-compatible HTTP API: any OpenAI client can talk to the agent.

``GET /v1/models`` lists one model, ``hermes-agent``. ``POST
/v1/chat/completions`` takes the last user message of ``messages`` as the
input (the agent keeps the conversation itself, in state.db); the ``user``
field or the ``X-Hermes-Session`` header names the conversation (without
either, each request is a conversation of its own). ``stream: true`` answers
in server-sent events as the model writes.

Every request needs ``Authorization: Bearer KEY`` with a key from
``API_SERVER_KEY`` (in ``.env``; several keys separated by commas, one per
caller); without a key the platform refuses to start rather than serve
everyone. Each key is a caller of its own: its conversations (``user``) and
its idempotency keys are its own. (The first key's conversations are named by
``user`` alone, as before several keys were possible.)

An ``Idempotency-Key`` header makes a request safe to repeat: the same caller
repeating it in the same conversation gets the stored answer instead of a
second run. The key is scoped to the caller and the conversation, so another
caller (or conversation) using the same key never receives this answer: its
request runs on its own. The same caller reusing a key for a different
question in the same conversation gets 409 instead of an answer to the wrong
question.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.jsonbody import BodyError, parse_json_body
from hermes_agent.gateway.platforms.base import Outbound, Platform

if TYPE_CHECKING:
    from aiohttp import web

    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway
    from hermes_agent.state.db import InboundMessage

KEY_ENV = "API_SERVER_KEY"
MODEL_ID = "hermes-agent"
SESSION_HEADER = "X-Hermes-Session"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_BODY_BYTES = 4 * 1024 * 1024
STOPPED_MESSAGE = (
    "the gateway stopped before this answer was ready; it is answered after the next "
    "start: send the request again with the same Idempotency-Key to get it"
)

#: An item a waiting request receives: ("text", delta), ("done", Outbound), or
#: ("closed", None) when the gateway stops before the answer (it is kept queued).
Item = tuple[str, Any]


def _digest(*parts: str) -> str:
    """A fixed-size digest of ``parts`` (NUL cannot occur in them: it separates them)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def parse_keys(raw: str) -> list[str]:
    """The API keys in ``API_SERVER_KEY``: separated by commas or white space."""
    return [key for key in raw.replace(",", " ").split() if key]


def caller_of(key: str) -> str:
    """A caller's id: a digest of its key, so the key itself is never stored."""
    return _digest("api-server-caller", key)[:16]


def conversation_id(caller: str, name: str, *, first: bool) -> str:
    """The platform chat id of conversation ``name`` of ``caller``.

    The first key's conversations keep their bare names (what they were when
    only one key existed); another caller's are prefixed with its id, so two
    callers naming the same ``user`` never share a conversation.
    """
    return name if first else f"{caller}:{name}"


def idempotent_message_id(caller: str, chat_id: str, key: str) -> str:
    """The stored message id of an ``Idempotency-Key``: scoped to caller and conversation."""
    return f"idem-{_digest(caller, chat_id, key)[:40]}"


def request_fingerprint(chat_id: str, text: str) -> str:
    """What a repeat must match to be answered with the stored reply."""
    return _digest(chat_id, text)


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    from aiohttp import web

    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _user_text(messages: Any) -> str | None:
    """The text of the last user message, or None."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [
                part["text"]
                for part in content
                if isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ]
            return "\n".join(parts) if parts else None
        return None
    return None


class ApiServer(Platform):
    name = "api_server"
    access_control = False  # Every request carries the API key.
    answers_in_request = True

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise UsageError(
                "the api_server platform needs aiohttp: pip install 'hermes-agent[api-server]'"
            ) from None
        keys = parse_keys(os.environ.get(KEY_ENV, ""))
        if not keys:
            raise UsageError(
                f"the api_server platform needs {KEY_ENV} in {home.env_path()} (clients send "
                f"it as `Authorization: Bearer KEY`); it never starts open to everyone. "
                f"Add a line {KEY_ENV}=A_LONG_RANDOM_KEY to that file"
            )
        #: (what the Authorization header holds, caller id, whether it is the first key)
        self._callers = [
            (f"Bearer {key}".encode(), caller_of(key), i == 0) for i, key in enumerate(keys)
        ]
        self.host = str(config.get("gateway.platforms.api_server.host"))
        self.port = int(config.get("gateway.platforms.api_server.port"))
        self._waiting: dict[str, list[asyncio.Queue[Item]]] = {}
        self._runner: web.AppRunner | None = None

    # --- Platform -------------------------------------------------------------------

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application(middlewares=[self._auth], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise HermesError(
                f"api_server cannot listen on {self.host}:{self.port}: {exc.strerror or exc} "
                "(gateway.platforms.api_server.host/port)"
            ) from None
        self._runner = runner

    async def stop(self) -> None:
        # Answers still running were put back in the queue: tell their clients to retry.
        for queues in self._waiting.values():
            for queue in queues:
                queue.put_nowait(("closed", None))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def send(self, message: Outbound) -> bool:
        # The answer goes in the HTTP response of the request waiting for it; a client
        # that is gone gets it by repeating the request with its Idempotency-Key.
        for queue in self._waiting.get(message.reply_to, ()):
            queue.put_nowait(("done", message))
        return True

    def stream(self, inbound: InboundMessage, delta: str) -> None:
        for queue in self._waiting.get(inbound.message_id, ()):
            queue.put_nowait(("text", delta))

    # --- HTTP -----------------------------------------------------------------------

    @property
    def _auth(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            given = request.headers.get("Authorization", "").encode()
            found = None
            for expected, caller, first in self._callers:  # Every key compared, in constant time.
                if hmac.compare_digest(given, expected) and found is None:
                    found = (caller, first)
            if found is None:
                return _error(
                    401,
                    "invalid or missing API key (Authorization: Bearer KEY)",
                    "invalid_request_error",
                    "invalid_api_key",
                )
            request["caller"] = found
            response: web.StreamResponse = await handler(request)
            return response

        return auth

    async def _models(self, request: web.Request) -> web.Response:
        from aiohttp import web

        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "hermes"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        too_large = f"the body is larger than {MAX_BODY_BYTES} bytes"
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, too_large, "invalid_request_error")
        try:
            # Measured before it is parsed: a body nested 100,000 deep is refused, not a 500.
            body = parse_json_body(await request.read(), max_bytes=MAX_BODY_BYTES)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, too_large, "invalid_request_error")
        except BodyError as exc:
            return _error(exc.status, str(exc), "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object", "invalid_request_error")
        text = _user_text(body.get("messages"))
        if text is None or not text.strip():
            return _error(
                400,
                "messages must end with a user message that has text",
                "invalid_request_error",
            )
        user = body.get("user")
        caller, first = request["caller"]
        named = request.headers.get(SESSION_HEADER) or (user if isinstance(user, str) else "")
        named = named.strip()
        idempotency = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if named:
            chat_id = conversation_id(caller, named, first=first)
        elif idempotency:  # A one-off conversation that a repeat of the request must find.
            chat_id = f"request-{_digest(caller, idempotency)[:32]}"
        else:
            chat_id = f"request-{uuid.uuid4().hex}"
        if idempotency:
            message_id = idempotent_message_id(caller, chat_id, idempotency)
        else:
            message_id = uuid.uuid4().hex
        fingerprint = request_fingerprint(chat_id, text)
        requested = body.get("model")
        model = requested if isinstance(requested, str) and requested else MODEL_ID
        queue: asyncio.Queue[Item] = asyncio.Queue()
        # Listen before submitting: the answer may come before submit returns to us.
        self._waiting.setdefault(message_id, []).append(queue)
        try:
            from hermes_agent.gateway.platforms.base import GatewayClosedError

            try:
                row, _new = self.gateway.submit(
                    platform=self.name,
                    chat_id=chat_id,
                    message_id=message_id,
                    text=text,
                    user_id=user if isinstance(user, str) else "",
                    fingerprint=fingerprint,
                )
            except GatewayClosedError:
                return _error(503, "the gateway is shutting down; retry shortly", "server_error")
            assert row is not None  # This platform does its own access control.
            if row.fingerprint is not None and row.fingerprint != fingerprint:
                return _error(
                    409,
                    f"this {IDEMPOTENCY_HEADER} was already used for a different request in "
                    "this conversation; use a new key for a new request",
                    "invalid_request_error",
                    "idempotency_key_reused",
                )
            if row.status in ("done", "failed"):  # A repeat of an answered message.
                queue.put_nowait(
                    (
                        "done",
                        Outbound(
                            platform=self.name,
                            chat_id=row.chat_id,
                            thread_id=row.thread_id,
                            reply_to=row.message_id,
                            text=row.reply or row.error or "",
                            failed=row.status == "failed",
                        ),
                    )
                )
            if body.get("stream"):
                return await self._stream(request, queue, model, body)
            return await self._whole(queue, model)
        finally:
            listeners = self._waiting.get(message_id, [])
            if queue in listeners:
                listeners.remove(queue)
            if not listeners:
                self._waiting.pop(message_id, None)

    async def _whole(self, queue: asyncio.Queue[Item], model: str) -> web.Response:
        from aiohttp import web

        while True:
            kind, value = await queue.get()
            if kind == "closed":
                return _error(503, STOPPED_MESSAGE, "server_error")
            if kind == "done":
                break
        out: Outbound = value
        if out.failed:
            return _error(502, out.text, "server_error")
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": out.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": out.input_tokens,
                    "completion_tokens": out.output_tokens,
                    "total_tokens": out.input_tokens + out.output_tokens,
                },
            }
        )

    async def _stream(
        self, request: web.Request, queue: asyncio.Queue[Item], model: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        from aiohttp import web

        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        async def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())

        await event({"role": "assistant", "content": ""})
        streamed = False
        while True:
            kind, value = await queue.get()
            if kind == "text":
                streamed = True
                await event({"content": value})
                continue
            break
        if kind == "closed":
            error = {"error": {"message": STOPPED_MESSAGE, "type": "server_error"}}
            await response.write(f"data: {json.dumps(error)}\n\n".encode())
            await response.write_eof()
            return response
        out: Outbound = value
        if out.failed:
            error = {"error": {"message": out.text, "type": "server_error"}}
            await response.write(f"data: {json.dumps(error)}\n\n".encode())
        else:
            if not streamed:  # Streaming off, or a repeat: the whole answer at once.
                await event({"content": out.text})
            await event({}, "stop")
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                usage = {
                    "prompt_tokens": out.input_tokens,
                    "completion_tokens": out.output_tokens,
                    "total_tokens": out.input_tokens + out.output_tokens,
                }
                chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
