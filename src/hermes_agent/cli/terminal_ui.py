"""How an agent turn looks in a terminal: streamed Markdown, a spinner, tool lines.

:class:`TerminalEvents` turns the loop's events into output with rich: a
spinner until the first token, the answer rendered as Markdown while it
streams, and one line per tool call with its status and duration. With
``plain=True`` (one-shot runs whose stdout is a pipe) the answer is written
raw to stdout and everything else goes to stderr, so scripts get clean text.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from hermes_agent.agent.loop import Events
from hermes_agent.providers.base import ProviderError, ToolCall
from hermes_agent.redact import StreamRedactor, redact, redact_data
from hermes_agent.tools.registry import ToolResult

#: Controls (but tab and newline), DEL, C1 and bidi overrides. Rich passes escape
#: sequences through, and the model writes approval questions' commands and tool
#: arguments: cursor moves or concealed text could make the user approve something else.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` redacted and escaped for Rich markup, control characters shown as ``\\xNN``."""
    return escape(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", redact(text)))


def _shown_text(text: str) -> str:
    """``text`` with control characters (but tab and newline) shown as ``\\xNN``.

    Per character, so the text of a prefix is a prefix of the whole text's (the
    streamed answer is written by what it adds)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def short_args(arguments: str, limit: int = 80) -> str:
    """A one-line preview of tool arguments, secrets redacted before it is cut.

    The arguments are redacted as data, before they are formatted: once a
    value is inside ``json.dumps`` a secret holding ``"`` or ``\\`` is spelt
    differently, and once it is cut short its tail no longer matches at all.
    """
    try:
        value = redact_data(json.loads(arguments or "{}"))
    except ValueError:
        text = redact(arguments)
    else:
        if isinstance(value, dict):
            text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
        else:
            text = json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(text: str, limit: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


class TerminalEvents(Events):
    def __init__(
        self, *, plain: bool = False, compact: bool = False, verbose: bool = False
    ) -> None:
        self.plain = plain
        self.compact = compact
        self.verbose = verbose
        self.out = Console(highlight=False, soft_wrap=not plain)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        #: The streamed answer: only what later pieces cannot turn into a secret is shown.
        self._stream = StreamRedactor()
        self._streaming = False
        #: Characters of the redacted answer already written (plain mode).
        self._emitted = 0
        self._live: Any = None
        self._status: Any = None
        self.streamed = False

    # --- spinner and live markdown ---------------------------------------------------

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def waiting(self, message: str = "thinking…") -> None:
        if self.plain or not self.err.is_terminal:
            return
        self._stop_status()
        self._status = self.err.status(message, spinner="dots")
        self._status.start()

    def _end_live(self) -> None:
        if self._live is not None:
            from rich.markdown import Markdown

            self._live.update(Markdown(self._safe_text(final=True)))
            self._live.stop()
            self._live = None
        elif self._streaming:
            self._emit_plain(final=True)
            sys.stdout.write("\n")
            sys.stdout.flush()
        self._stream.reset()
        self._streaming = False
        self._emitted = 0

    def finish(self) -> None:
        """End of the turn: stop the spinner, close the streamed answer."""
        self._stop_status()
        self._end_live()

    # --- Events ------------------------------------------------------------------------

    def _safe_text(self, final: bool) -> str:
        """The answer so far, redacted; unless ``final``, only what cannot still change.

        Streamed pieces are redacted as a whole, and the end still being
        written is held back (see :class:`StreamRedactor`), so a secret split
        across pieces never shows. Control characters are shown as text: the model
        writes this, and an escape sequence could redraw what the user saw.
        """
        return _shown_text(self._stream.text(final))

    def text(self, delta: str) -> None:
        self._stop_status()
        self.streamed = True
        self._streaming = True
        self._stream.feed(delta)
        if self.plain or not self.out.is_terminal:
            self._emit_plain(final=False)
            return
        from rich.live import Live
        from rich.markdown import Markdown

        if self._live is None:
            self._live = Live(console=self.out, refresh_per_second=12, vertical_overflow="visible")
            self._live.start()
        self._live.update(Markdown(self._safe_text(final=False)))

    def _emit_plain(self, final: bool) -> None:
        visible = self._safe_text(final)
        if len(visible) > self._emitted:
            sys.stdout.write(visible[self._emitted :])
            sys.stdout.flush()
            self._emitted = len(visible)

    def retrying(self, error: ProviderError, delay: float, attempt: int) -> None:
        shown = self._streaming
        self.finish()
        note = " (the partial answer above is void)" if shown else ""
        self.err.print(
            f"[yellow]⟳ {escape(redact(str(error)))}; retrying in {delay:.1f}s "
            f"(attempt {attempt + 1}){note}[/]"
        )
        self.waiting()

    def fallback(self, error: ProviderError, message: str) -> None:
        shown = self._streaming
        self.finish()
        note = " (the partial answer above is void)" if shown else ""
        self.err.print(f"[yellow]↪ {escape(redact(message))}{note}[/]")
        self.waiting()

    def tool_started(self, call: ToolCall) -> None:
        self.finish()
        name = redact(call.name)
        if not self.compact:
            self.err.print(
                f"[cyan]⚙ {visible(name)}[/]([dim]{visible(short_args(call.arguments))}[/])"
            )
        self.waiting(f"running {name}…")

    def tool_finished(self, result: ToolResult, seconds: float) -> None:
        self._stop_status()
        name = visible(result.call.name)
        if result.is_error:
            self.err.print(
                f"  [red]✗ {name}: {visible(first_line(redact(result.content)))}[/] "
                f"[dim]{seconds:.1f}s[/]"
            )
        elif self.verbose:
            self.err.print(
                f"  [green]✓ {name}[/] [dim]{seconds:.1f}s[/]\n"
                f"{visible(redact(result.content)[:2000])}"
            )
        else:
            self.err.print(f"  [green]✓ {name}[/] [dim]{seconds:.1f}s[/]")
        self.waiting()

    def notice(self, message: str) -> None:
        self.finish()
        self.err.print(f"[yellow]{visible(message)}[/]")

    async def ask(self, question: str, choices: Sequence[str]) -> str | None:
        """Ask at the terminal; None when there is no terminal to ask at."""
        if not sys.stdin.isatty():
            return None
        self.finish()
        from prompt_toolkit import PromptSession

        hint = f" [{'/'.join(choices)}]" if choices else ""
        self.err.print(f"[bold magenta]?[/] {visible(question)}{visible(hint)}")
        try:
            answer: str = await PromptSession[str]().prompt_async("  answer: ")
        except EOFError:
            return None
        finally:
            self.waiting()
        return answer.strip()

    def print_answer(self, text: str) -> None:
        """Show a whole answer that was not streamed (streaming off)."""
        self.finish()
        text = _shown_text(redact(text))
        if self.plain or not self.out.is_terminal:
            sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
            sys.stdout.flush()
        else:
            from rich.markdown import Markdown

            self.out.print(Markdown(text))
