"""Run ``@copilotkit/aimock`` (an npm LLM mock server) for a test.

``tests/peers/install.sh`` installs the pinned version (``package-lock.json``) into
``tests/peers/node_modules``; ``scripts/test`` runs it before pytest. One server per
``Aimock`` context, started with ``-p 0 --strict --validate-on-load`` on 127.0.0.1;
it answers after 0.2-0.3 s (``startup_seconds``)::

    with Aimock([
        {"match": {"toolCallId": "call_w1"}, "response": {"content": "It is sunny."}},
        {"match": {"userMessage": "weather"},
         "response": {"toolCalls": [
             {"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]}},
    ]) as mock:
        client = openai.OpenAI(base_url=mock.openai_base_url, api_key="test", max_retries=0)
        ...
        assert [e["path"] for e in mock.journal()] == ["/v1/chat/completions"] * 2

What was verified with the official ``openai`` (3.x) and ``anthropic`` (2.x) Python
SDKs against aimock 1.43.0, plain and streaming (``tests/test_peers.py``):

Fixture shapes (a list of ``{"match": {...}, "response": {...}}``; first match wins):

- Plain text: ``{"match": {"userMessage": "hello"}, "response": {"content": "Hi!"}}``.
  ``userMessage`` is a substring of the LAST user message's text.
- One tool call: ``"response": {"toolCalls": [{"name": "f", "arguments": {...}}]}``.
  ``arguments`` may be an object (aimock stringifies it) or a JSON string. Without
  ``"id"`` each reply gets a fresh random id (``call_...`` on OpenAI, ``toolu_...`` on
  Anthropic): give ``"id"`` to chain a ``toolCallId`` fixture on it. A given id is
  used as it is by both APIs, plain and streamed.
- Parallel tool calls: several entries in ``toolCalls``; OpenAI gets one message with
  ``tool_calls`` (indexes 0..n in the stream), Anthropic one ``tool_use`` block each
  (``input_json_delta`` when streamed). Finish reason ``tool_calls`` / ``tool_use``.
- Text and tool calls in one turn: ``{"content": "...", "toolCalls": [...]}`` (text
  first); ``"blocks"`` orders them otherwise.
- Tool call, then text after the tool result: a fixture
  ``{"match": {"toolCallId": "call_w1"}, "response": {"content": ...}}`` matches the
  request whose LAST message is the tool result for ``call_w1`` (OpenAI ``role:
  tool``; Anthropic ``tool_result`` with that ``tool_use_id``). List it BEFORE the
  ``userMessage`` fixture: the follow-up request still has the same last user text,
  so a ``userMessage`` fixture listed first answers the tool call again (a loop).
  ``{"hasToolResult": true/false}`` next to ``userMessage`` is the order-free way.
- Also matchable: ``toolName`` (a tool offered in ``tools``), ``sequenceIndex`` (the
  n-th time that fixture's other fields matched, 0-based), ``turnIndex`` (number of
  assistant messages), ``systemMessage``, ``model``, ``toolResultContains``.
- Errors: ``{"error": {"message": ..., "type": ...}, "status": 429, "retryAfter": 2}``
  gives each API's error JSON (Anthropic's ``{"type": "error", "error": {...}}``);
  a 429 carries ``Retry-After`` (default 1) and both SDKs wait for it before retrying.
  401 gives the SDKs' ``AuthenticationError``.

Usage: OpenAI always reports ``usage``; without an override aimock estimates it from
the text length. Streamed, the usage chunk (``choices: []``) comes only when the
request sets ``stream_options.include_usage``. Anthropic reports ``input_tokens`` /
``output_tokens`` (in ``message_start`` and ``message_delta`` when streamed), but they
are 0 unless the fixture says ``"usage": {...}``. One override serves both APIs: use
``{"prompt_tokens": 11, "completion_tokens": 3}`` or ``{"input_tokens": 11,
"output_tokens": 3}``; either spelling is mapped to each API's own.

Journal (``GET /__aimock/journal``, oldest first; ``journal(path=..., status=...)``
filters): one entry per API request (not for ``/health``)::

    {"id": "req-...", "timestamp": 1795597591808 (ms), "method": "POST",
     "path": "/v1/messages", "headers": {... auth values "[REDACTED]" ...},
     "body": {...}, "response": {"status": 200, "fixture": {<the matched fixture>}
                                 | None, "interrupted": True?, "interruptReason": ...}}

The ``body`` is normalised to OpenAI chat format for every API: an Anthropic request
shows ``system`` as a ``role: system`` message, ``tool_use`` as ``tool_calls``,
``tool_result`` as ``role: tool`` messages and ``tools`` as OpenAI function tools;
``_endpointType: "chat"`` is added.

What does not work, or surprises:

- ``--strict`` answers an unmatched request with 503 (OpenAI: code
  ``no_fixture_match``); the SDKs retry 503 twice with back-off, so pass
  ``max_retries=0`` to fail fast. Anthropic's 503 body lacks the ``"type": "error"``
  wrapper (the SDK still raises ``ServiceUnavailableError``).
- With ``--strict`` an empty fixture list aborts start-up, so ``Aimock([])`` is refused.
- Without ``--validate-on-load`` a fixture with an unknown response shape loads, and
  a request it matches gets 500 "Fixture response did not match any known type";
  with it (our default) start-up fails naming the fixture. An unknown ``match`` key
  is not caught by aimock at all (the match becomes a catch-all), so this module
  rejects unknown keys itself.
- ``truncateAfterChunks`` (a fixture-level field) destroys the socket before Node
  flushed anything unless the fixture also sets ``"latency"`` (ms between chunks): the
  SDK then fails on ``create()``, not while iterating. With latency the client sees
  about N-1 chunks, then the cut. ``--chaos-disconnect`` drops the connection before
  any byte, plain or streamed. For a cut at an exact chunk use ``ScriptedLLM``.
- ``--chaos-ratelimit 1`` answers 429 with ``Retry-After: 1`` and an OpenAI-shaped
  body on both APIs.
- A streamed reply is split into deltas of 20 characters (``-c`` / ``chunkSize``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .daemons import Daemon

__all__ = ["AIMOCK_CLI", "Aimock", "AimockError", "AimockNotInstalled"]

PEERS_DIR = Path(__file__).resolve().parent
AIMOCK_CLI = PEERS_DIR / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
INSTALL_HINT = "run tests/peers/install.sh (needs node >= 20.15 and npm)"

# The keys aimock's JSON fixture loader understands; anything else would be ignored
# silently, turning a typo into a catch-all fixture.
MATCH_KEYS = frozenset(
    {
        "userMessage",
        "systemMessage",
        "inputText",
        "toolCallId",
        "toolResultContains",
        "toolName",
        "model",
        "responseFormat",
        "sequenceIndex",
        "turnIndex",
        "hasToolResult",
        "endpoint",
        "context",
    }
)
FIXTURE_KEYS = frozenset(
    {
        "match",
        "response",
        "latency",
        "chunkSize",
        "truncateAfterChunks",
        "disconnectAfterMs",
        "streamingProfile",
        "recordedTimings",
        "replaySpeed",
        "chaos",
        "openRouterProcessing",
        "metadata",
    }
)
# Flags this class sets itself.
_OWN_FLAGS = frozenset({"-p", "--port", "-h", "--host", "-f", "--fixtures"})
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class AimockError(RuntimeError):
    """aimock could not be started or answered unexpectedly."""


class AimockNotInstalled(AimockError):
    """node or the npm package is missing."""


def check_fixtures(fixtures: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the fixtures as plain dicts, refusing what aimock would silently ignore."""
    checked: list[dict[str, Any]] = []
    for index, fixture in enumerate(fixtures):
        if not isinstance(fixture, Mapping):
            raise ValueError(f"aimock fixture #{index} is not a mapping: {fixture!r}")
        unknown = set(fixture) - FIXTURE_KEYS
        if unknown:
            raise ValueError(f"aimock fixture #{index}: unknown keys {sorted(unknown)}")
        match, response = fixture.get("match"), fixture.get("response")
        if not isinstance(match, Mapping) or not isinstance(response, Mapping):
            raise ValueError(f"aimock fixture #{index} needs a 'match' and a 'response' mapping")
        unknown = set(match) - MATCH_KEYS
        if unknown:
            raise ValueError(
                f"aimock fixture #{index}: unknown match keys {sorted(unknown)} "
                f"(known: {', '.join(sorted(MATCH_KEYS))})"
            )
        checked.append(json.loads(json.dumps(fixture)))
    if not checked:
        raise ValueError("aimock needs at least one fixture: with --strict it refuses to start")
    return checked


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


class Aimock(Daemon):
    """One aimock server on a free 127.0.0.1 port, serving ``fixtures``.

    ``extra_args`` go to the CLI as they are (e.g. ``["--chaos-ratelimit", "1"]``,
    ``["-l", "30"]``); ``strict=False`` drops ``--strict`` (unmatched requests then
    get 404). Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        fixtures: Sequence[Mapping[str, Any]],
        *,
        extra_args: Sequence[str] = (),
        strict: bool = True,
        start_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        cli: Path = AIMOCK_CLI,
    ) -> None:
        own = _OWN_FLAGS.intersection(a.split("=", 1)[0] for a in extra_args)
        if own:
            raise ValueError(f"Aimock sets {sorted(own)} itself")
        self.fixtures = check_fixtures(fixtures)
        self.extra_args = list(extra_args)
        self.strict = strict
        self.start_timeout = start_timeout
        self.cli = cli
        self._env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._url: str | None = None
        self._log_path: Path | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Aimock:
        """Start the server and wait until it answers; raises ``AimockError`` if not."""
        if self._process is not None:
            return self
        node = shutil.which("node")
        if node is None:
            raise AimockNotInstalled(f"node is not on PATH: {INSTALL_HINT}")
        if not self.cli.is_file():
            raise AimockNotInstalled(f"aimock is not installed at {self.cli}: {INSTALL_HINT}")
        self._dir = tempfile.TemporaryDirectory(prefix="aimock-")
        folder = Path(self._dir.name)
        fixture_file = folder / "fixtures.json"
        fixture_file.write_text(json.dumps({"fixtures": self.fixtures}, indent=1))
        self._log_path = folder / "aimock.log"
        args = [node, str(self.cli), "-p", "0", "-h", "127.0.0.1", "-f", str(fixture_file)]
        args += ["--validate-on-load", *(["--strict"] if self.strict else []), *self.extra_args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIMOCK_")}
        env.update(self._env)
        began = time.monotonic()
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        try:
            self._url = self._wait_ready(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> str:
        assert self._process is not None
        url: str | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AimockError(
                    f"aimock exited with status {self._process.returncode} while starting:\n"
                    f"{self.log()}"
                )
            if url is None:
                found = _LISTENING.search(self.log())
                url = found.group(1) if found else None
            if url is not None and _answers(f"{url}/health"):
                return url
            time.sleep(0.02)
        raise AimockError(f"aimock did not answer within {self.start_timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (kill it after ``timeout``) and remove its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._url = None

    # -- what tests use -----------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._url is None:
            raise AimockError("aimock is not running: use Aimock as a context manager")
        return self._url

    @property
    def openai_base_url(self) -> str:
        """For ``openai.OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.Anthropic(base_url=...)``: the SDK appends ``/v1/messages``."""
        return self.url

    def log(self) -> str:
        """What aimock printed so far (stdout and stderr)."""
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def journal(self, **filters: str | int) -> list[dict[str, Any]]:
        """The requests aimock received, oldest first.

        ``filters`` are aimock's query parameters: ``path`` (substring), ``method``,
        ``status``, ``limit``, ``offset``, ``testId``, ``requestId``, ``service``.
        """
        query = urllib.parse.urlencode({k: str(v) for k, v in filters.items()})
        entries = self._call("GET", "/__aimock/journal" + (f"?{query}" if query else ""))
        if not isinstance(entries, list):
            raise AimockError(f"unexpected journal: {entries!r}")
        return entries

    def clear_journal(self) -> None:
        """Forget the recorded requests (fixtures and match counts stay)."""
        self._call("POST", "/__aimock/reset/journal")

    def add_fixtures(self, fixtures: Sequence[Mapping[str, Any]]) -> None:
        """Append fixtures to the running server (validated by aimock, 400 if wrong)."""
        checked = check_fixtures(fixtures)
        self._call("POST", "/__aimock/fixtures", {"fixtures": checked})
        self.fixtures += checked

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise AimockError(f"{method} {path} -> {error.code}: {detail}") from None
