"""Webhooks: a signed ``POST /hooks/<route>`` runs the agent on a prompt made from the request.

Each route (``gateway.platforms.webhook.routes.<name>``) says how to turn a
request into a prompt and where the answer goes::

    routes:
      github:
        prompt: "Summarise this {payload.action} event on {payload.repository.full_name}"
        secret_env: GITHUB_WEBHOOK_SECRET      # the HMAC key, from HERMES_HOME/.env
        deliver: "telegram:123456"             # or "none" (the default)
        wait: false                            # true: the HTTP response carries the answer

A request must be signed like GitHub signs its webhooks: ``X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the raw body>`` (``X-Hermes-Signature`` is accepted
in the same format); a missing or wrong signature is 401 and nothing is
stored. The delivery id (``X-Hermes-Delivery`` or ``X-GitHub-Delivery``) is the
platform message id, so a redelivered hook is answered once. Every route is one
conversation (chat id = route name) whose messages are answered in order.

The prompt is a template, not a format string: ``{body}`` is the raw body,
``{payload}`` the parsed JSON body, ``{payload.a.b}`` / ``{payload.items.0}``
a field of it (empty when absent), ``{{`` and ``}}`` literal braces; nothing
else is substituted, so a payload cannot reach attributes or other fields.
Substituted text is foreign: blobs (``{body}``, objects) arrive between the
untrusted-content markers, and markers forged inside any value are defused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.delivery_target import Target
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.gateway.platforms.base import Outbound, Platform

if TYPE_CHECKING:
    from aiohttp import web

    from hermes_agent.config.loader import Config
    from hermes_agent.gateway.runner import Gateway

log = logging.getLogger("hermes_agent.gateway")

PREFIX = "gateway.platforms.webhook"
SIGNATURE_HEADERS = ("X-Hub-Signature-256", "X-Hermes-Signature")
DELIVERY_HEADERS = ("X-Hermes-Delivery", "X-GitHub-Delivery")
ROUTE_KEYS = ("prompt", "secret_env", "deliver", "wait")
_ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")
STOPPED_MESSAGE = (
    "the gateway stopped before the answer was ready; it is answered after the next start "
    "(send the hook again with the same delivery id to get the answer)"
)


class BadPayloadError(Exception):
    """The request cannot fill the route's template (400)."""


# --- the prompt template --------------------------------------------------------------

#: A literal piece of the template, or the path of a placeholder: ("body",) or
#: ("payload", "field", ...).
Part = str | tuple[str, ...]


class Template:
    """A route's prompt: literal text and ``{body}`` / ``{payload.x.y}`` placeholders."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.uses_payload = any(isinstance(p, tuple) and p[0] == "payload" for p in parts)

    @classmethod
    def parse(cls, text: str, where: str) -> Template:
        """Check ``text`` once at start; a bad placeholder is a UsageError naming it."""
        parts: list[Part] = []
        literal: list[str] = []
        position = 0
        for match in _TOKEN.finditer(text):
            literal.append(text[position : match.start()])
            position = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                literal.append(token[0])
                continue
            name = match.group(1)
            if name is None:
                raise UsageError(
                    f"{where}: unmatched {token!r} at character {match.start() + 1}; "
                    "write {{ or }} for a literal brace"
                )
            path = tuple(name.strip().split("."))
            if path != ("body",) and (
                path[0] != "payload" or not all(_FIELD.fullmatch(f) for f in path[1:])
            ):
                raise UsageError(
                    f"{where}: unknown placeholder {{{name}}}; use {{body}}, {{payload}} or "
                    "{payload.field.subfield} (letters, digits, _ and -; list items by number)"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(path)
        literal.append(text[position:])
        if "".join(literal):
            parts.append("".join(literal))
        return cls(parts)

    def render(self, body: str, payload: Any, source: str) -> str:
        from hermes_agent.tools.untrusted import _defuse, wrap

        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part == ("body",):
                out.append(wrap(body, source))
            else:
                value = _lookup(payload, part[1:])
                if isinstance(value, dict | list):
                    out.append(wrap(json.dumps(value, ensure_ascii=False, indent=2), source))
                else:
                    out.append(_defuse(_scalar(value)))
        return "".join(out)


def _lookup(value: Any, path: tuple[str, ...]) -> Any:
    for field in path:
        if isinstance(value, dict):
            value = value.get(field)
        elif isinstance(value, list) and field.isdigit() and int(field) < len(value):
            value = value[int(field)]
        else:
            return None
    return value


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    template: Template
    secret: bytes
    secret_env: str
    deliver: Target | None
    wait: bool


def load_routes(config: Config) -> dict[str, Route]:
    """Every route of ``gateway.platforms.webhook.routes``, checked; UsageError naming a fault."""
    raw = config.get(f"{PREFIX}.routes") or {}
    if not isinstance(raw, dict) or not raw:
        raise UsageError(
            f"the webhook platform has no routes: add one under {PREFIX}.routes in "
            f"{config.path}, e.g. routes: {{github: {{prompt: 'Summarise: {{body}}', "
            "secret_env: GITHUB_WEBHOOK_SECRET}}"
        )
    return {str(name): _route(config, str(name), spec) for name, spec in raw.items()}


def _route(config: Config, name: str, spec: Any) -> Route:
    where = f"{config.path}: {PREFIX}.routes.{name}"
    if not _ROUTE_NAME.fullmatch(name):
        raise UsageError(
            f"{where}: a route name is its URL (/hooks/NAME): use letters, digits, '_', '-' "
            "and '.' (at most 64)"
        )
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: expected a mapping with prompt and secret_env")
    unknown = sorted(str(k) for k in spec if k not in ROUTE_KEYS)
    if unknown:
        raise UsageError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(ROUTE_KEYS)})")
    prompt = spec.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(
            f"{where}.prompt: required: the prompt template, e.g. 'Summarise: {{body}}'"
        )
    template = Template.parse(prompt, f"{where}.prompt")
    secret_env = spec.get("secret_env")
    if not isinstance(secret_env, str) or not _ENV_NAME.fullmatch(secret_env):
        raise UsageError(
            f"{where}.secret_env: required: the name of the variable in {home.env_path()} "
            "that holds the route's HMAC secret, e.g. GITHUB_WEBHOOK_SECRET"
        )
    secret = os.environ.get(secret_env, "")
    if not secret.strip():
        raise UsageError(
            f"webhook route {name!r} needs its secret: {secret_env} is not set. Add a line "
            f"{secret_env}=A_LONG_RANDOM_SECRET to {home.env_path()} (the same secret the "
            "sender signs with); routes never accept unsigned requests"
        )
    wait = spec.get("wait", False)
    if not isinstance(wait, bool):
        raise UsageError(f"{where}.wait: expected true or false, got {wait!r}")
    return Route(
        name=name,
        template=template,
        secret=secret.encode("utf-8"),
        secret_env=secret_env,
        deliver=_target(config, where, spec.get("deliver", "none")),
        wait=wait,
    )


def _target(config: Config, where: str, value: Any) -> Target | None:
    # The platform names from below the gateway: an adapter never imports the registry.
    from hermes_agent.delivery_target import PLATFORM_NAMES, REQUEST_ONLY_PLATFORMS

    where = f"{where}.deliver"
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        try:
            target = Target.parse(value)
        except ValueError as exc:
            raise UsageError(f"{where}: {value!r}: {exc}") from None
    elif isinstance(value, dict) and set(value) <= {"platform", "chat", "thread"}:
        target = Target(*(str(value.get(k) or "").strip() for k in ("platform", "chat", "thread")))
    else:
        raise UsageError(
            f"{where}: expected 'none', 'PLATFORM:CHAT[:THREAD]' or a mapping with platform, "
            f"chat and thread; got {value!r}"
        )
    if not target.platform or not target.chat_id:
        raise UsageError(f"{where}: {value!r} names no platform and chat (PLATFORM:CHAT[:THREAD])")
    if target.platform in REQUEST_ONLY_PLATFORMS or target.platform not in PLATFORM_NAMES:
        known = ", ".join(sorted(set(PLATFORM_NAMES) - REQUEST_ONLY_PLATFORMS))
        raise UsageError(f"{where}: cannot deliver to {target.platform!r} (platforms: {known})")
    if not config.get(f"gateway.platforms.{target.platform}.enabled"):
        raise UsageError(
            f"{where}: delivers to {target.platform}, which is not enabled "
            f"(gateway.platforms.{target.platform}.enabled)"
        )
    return target


def signature_ok(secret: bytes, body: bytes, headers: Any) -> bool:
    """True when a signature header is present and every one present matches (constant time)."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    given = [headers[h] for h in SIGNATURE_HEADERS if h in headers]
    if not given:
        return False
    return all(
        hmac.compare_digest(value.strip().lower().encode("ascii", "replace"), expected.encode())
        for value in given
    )


def _json(code: int, /, **fields: Any) -> web.Response:
    from aiohttp import web

    return web.json_response(fields, status=code)


# --- the platform ---------------------------------------------------------------------


class Webhook(Platform):
    name = "webhook"
    access_control = False  # Every request is signed with the route's secret.
    untrusted_input = True  # The payload is whatever the sender of the hook chose.
    max_message_length = 1_000_000  # Answers go into one HTTP response or to another platform.

    def __init__(self, gateway: Gateway, config: Config) -> None:
        super().__init__(gateway, config)
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise UsageError(
                "the webhook platform needs aiohttp: pip install 'hermes-agent[webhook]'"
            ) from None
        self.host = str(config.get(f"{PREFIX}.host"))
        self.port = int(config.get(f"{PREFIX}.port"))
        self.max_body = int(config.get(f"{PREFIX}.max_body_bytes"))
        self.routes = load_routes(config)
        self._waiting: dict[str, list[asyncio.Future[Outbound | None]]] = {}
        self._runner: web.AppRunner | None = None

    # --- Platform -------------------------------------------------------------------

    async def start(self) -> None:
        from aiohttp import web

        # A larger client_max_size: our own check answers 413 with a clear message.
        app = web.Application(client_max_size=self.max_body + 1)
        app.router.add_post("/hooks/{route}", self._hook)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise HermesError(
                f"webhook cannot listen on {self.host}:{self.port}: {exc.strerror or exc} "
                f"({PREFIX}.host/port)"
            ) from None
        self._runner = runner
        for route in self.routes.values():
            log.info(
                "webhook route %s: POST http://%s:%d/hooks/%s (deliver: %s, wait: %s)",
                route.name,
                self.host,
                self.port,
                route.name,
                route.deliver or "none",
                "yes" if route.wait else "no",
            )

    async def stop(self) -> None:
        # Answers still running stay queued for the next start; tell waiting senders so.
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def send(self, message: Outbound) -> bool:
        """Hand the answer to waiting requests and to the route's target chat."""
        for future in self._waiting.get(message.reply_to, ()):
            if not future.done():
                future.set_result(message)
        route = self.routes.get(message.chat_id)
        if route is None:
            log.warning("webhook: answer for route %r, which is not configured", message.chat_id)
            return True
        if route.deliver is not None:
            target = route.deliver
            delivered = await self.gateway.deliver_text(
                target.platform, target.chat_id, target.thread_id, message.text
            )
            if not delivered:
                log.warning(
                    "webhook route %s: the answer could not be sent to %s", route.name, target
                )
        return True

    async def send_text(self, chat_id: str, thread_id: str, text: str, reply_to: str) -> None:
        # Never called: send() delivers every answer itself.
        return None

    # --- HTTP -----------------------------------------------------------------------

    async def _hook(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from hermes_agent.gateway.platforms.base import GatewayClosedError

        name = request.match_info["route"]
        route = self.routes.get(name)
        if route is None:
            return _json(404, error=f"no webhook route {name!r}")
        too_large = _json(413, error=f"the body is larger than {self.max_body} bytes")
        if request.content_length is not None and request.content_length > self.max_body:
            return too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return too_large
        if len(body) > self.max_body:
            return too_large
        if not signature_ok(route.secret, body, request.headers):
            log.warning("webhook route %s: request with a missing or bad signature refused", name)
            return _json(
                401, error="missing or invalid signature (X-Hub-Signature-256: sha256=HEX)"
            )
        delivery = next(
            (request.headers[h].strip() for h in DELIVERY_HEADERS if h in request.headers), ""
        )
        if delivery and not _DELIVERY_ID.fullmatch(delivery):
            return _json(400, error="the delivery id must be 1 to 200 printable characters")
        try:
            text = route.template.render(
                body.decode("utf-8", errors="replace"),
                _payload(request, body) if route.template.uses_payload else None,
                f"webhook {name}",
            )
        except BadPayloadError as exc:
            return _json(400, error=str(exc))
        message_id = f"{name}:{delivery or uuid.uuid4().hex}"
        future: asyncio.Future[Outbound | None] = asyncio.get_running_loop().create_future()
        if route.wait:  # Listen before submitting: the answer may be quick.
            self._waiting.setdefault(message_id, []).append(future)
        try:
            try:
                row, new = self.gateway.submit(
                    platform=self.name, chat_id=name, message_id=message_id, text=text
                )
            except GatewayClosedError:
                return web.json_response(
                    {"error": "the gateway is shutting down; send the hook again shortly"},
                    status=503,
                    headers={"Retry-After": "5"},
                )
            assert row is not None  # This platform does its own access control.
            status = "accepted" if new else "duplicate"
            if not route.wait:
                return _json(202, id=row.id, route=name, status=status, delivery=delivery or None)
            if row.status in ("done", "failed"):  # A repeat of a hook answered before.
                answer: Outbound | None = Outbound(
                    platform=self.name,
                    chat_id=name,
                    thread_id="",
                    reply_to=message_id,
                    text=row.reply or row.error or "",
                    failed=row.status == "failed",
                )
            else:
                answer = await future
        finally:
            listeners = self._waiting.get(message_id, [])
            if future in listeners:
                listeners.remove(future)
            if not listeners:
                self._waiting.pop(message_id, None)
        if answer is None:
            return _json(503, id=row.id, route=name, error=STOPPED_MESSAGE)
        if answer.failed:
            return _json(502, id=row.id, route=name, status="failed", error=answer.text)
        return _json(200, id=row.id, route=name, status="done", answer=answer.text)


def _payload(request: web.Request, body: bytes) -> Any:
    """The JSON body (or GitHub's form-encoded ``payload=`` field)."""
    if request.content_type == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qs

        fields = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise BadPayloadError("a form-encoded body needs a payload field holding JSON")
        raw = fields["payload"][0]
    else:
        raw = body.decode("utf-8", errors="replace")
    from hermes_agent.gateway.jsonbody import MAX_DEPTH, nesting_ok

    if not nesting_ok(raw.encode("utf-8", "surrogatepass")):  # Before the parser recurses.
        raise BadPayloadError(
            f"the body is not valid JSON or nests deeper than {MAX_DEPTH} levels, "
            "which this route's prompt cannot use for {payload...}"
        )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadPayloadError(
            "the body is not valid JSON, which this route's prompt needs for {payload...}"
        ) from None
