"""A loopback HTTP server with scripted routes, for the web tools' tests.

Standard library only. Each route answers with a :class:`Page` (status, type,
body, extra headers, an optional delay) or with a callable that builds one
from the :class:`Seen` request, so a test can play a web site, a SearXNG
instance, the Brave or the Tavily API, a redirect loop or a server that never
answers in time::

    with WebServer({"/": Page("<html>...</html>"), "/slow": Page("late", delay=5)}) as web:
        url = web.url("/")
        ...
        assert web.requests[0].headers["user-agent"].startswith("hermes-agent/")

Unknown paths get 404. ``stop()`` (or leaving the ``with``) ends any delay at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .daemons import Daemon, free_port

__all__ = ["Page", "Seen", "WebServer", "free_port"]


@dataclass(frozen=True)
class Page:
    body: bytes | str | Any = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (a slow or hung server).
    delay: float = 0.0

    @classmethod
    def json(cls, obj: Any, status: int = 200, **kwargs: Any) -> Page:
        return cls(json.dumps(obj), status, "application/json", **kwargs)


@dataclass(frozen=True)
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Route = Page | Callable[[Seen], Page]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        owner.requests.append(seen)
        route = owner.routes.get(parts.path)
        if route is None:
            page = Page("<h1>Not Found</h1>", 404)
        else:
            page = route(seen) if callable(route) else route
        if page.delay and owner.stopping.wait(page.delay):
            self.close_connection = True
            return
        body = page.body if isinstance(page.body, bytes) else str(page.body).encode("utf-8")
        try:
            self.send_response(page.status)
            if page.content_type:
                self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in page.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class WebServer(Daemon):
    def __init__(self, routes: Mapping[str, Route] | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
