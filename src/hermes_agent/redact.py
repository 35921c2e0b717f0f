"""Redaction: the one place that keeps secrets out of what hermes shows, stores and sends.

Every tool result and tool error (before the model, the screen or state.db see
them), every message stored in state.db, every log line, export and gateway
reply passes :func:`redact` (text) or :func:`redact_data` (a dict or list,
redacted *before* it is serialised: a secret holding ``"`` or ``\\`` is spelt
differently once inside JSON). It replaces:

- every value hermes knows to be secret: the values in ``HERMES_HOME/.env``,
  the string values in ``auth.json`` and in the MCP token files, and the
  environment variables whose names look like secrets (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``), each also in the spellings a
  command or a serialiser turns it into: JSON-escaped (once and twice),
  escaped the way source code and shells write it (Python ``repr``, only
  backslashes or only quotes escaped, ``'\\''`` splicing), URL-encoded
  (``quote`` and ``quote_plus``, and every byte as ``%XX``),
  base64 (standard and URL-safe, at each of the three byte alignments, so the
  secret is found inside a longer base64 stream wherever it starts), hex
  (lower and upper case, plain or ``\\x``-escaped). Whitespace between the
  characters does not hide a value either: ``base64`` wraps its output at 76
  columns and ``od``/``xxd`` put spaces between bytes, so the values are
  looked for in the text with its whitespace taken out;
- well-known key shapes, whoever they belong to (OpenAI/Anthropic/OpenRouter
  keys, GitHub and Slack tokens, AWS access key ids, Google API keys, Telegram
  bot tokens, JWTs, ``Bearer`` credentials, PEM private keys).

All spellings of all values are one compiled regular expression (a trie of
the spellings, so shared prefixes are tried once), rebuilt only when a secret
file changes: a key added with `hermes config set` is covered at once.
``redaction.enabled: false`` turns redaction off (for debugging a provider,
never by default).

Outbound requests are a different question: not "hide it" but "do not send
it". :func:`outbound_secret` tells whether a URL, a header or a body carries a
known value in any spelling above, also percent-decoded, in any letter case
and with separators between its characters (a host name such as
``ab-cd.ef.attacker.example`` is case-folded and split by dots);
:func:`refuse_if_secret` raises :class:`SecretInRequestError` naming the
variable (never the value); :func:`httpx_request_guard` applies the check to
every request an ``httpx`` client sends, redirects included.

What value matching cannot do: a secret transformed some other way (reversed,
rot13, split over several requests, an ``xxd`` dump whose offsets interleave
with the hex) is not recognised. Keeping the agent from reading the secret
files at all is the kernel sandbox's job; this is the net behind it.
"""

from __future__ import annotations

import base64
import bisect
import functools
import html
import json
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hermes_agent import home
from hermes_agent.errors import HermesError

MASK = "[REDACTED]"
#: Shorter values are too likely to be ordinary words ("true", "admin") to replace.
MIN_SECRET_LENGTH = 8
#: A spelling shorter than this (with whitespace taken out) is not looked for.
MIN_FORM_LENGTH = 6

_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD|PASSWD|_KEY)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """An environment variable whose name says it holds a credential (``*_API_KEY``...)."""
    return bool(_SECRET_NAME.search(name))


# Key shapes: each matches the secret itself, never surrounding text. Each pattern starts
# with a literal character, so the regex engine skips to candidates at C speed: a leading
# ``\b`` (which defeats that) is written as a look-behind after the first character,
# ``s(?<!\ws)`` meaning "an s with no word character before it". One alternation of
# these runs 30 times slower than the separate searches.
#
# Each pattern comes with the literal texts one of which every match contains: a text
# holding none of them cannot match, and is not searched. Most texts redacted (an audit
# line's fields, a tool call's arguments, a short result) hold none, and a few substring
# tests cost a fifth of starting eight searches.
_SHAPES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (needles, re.compile(pattern))
    for needles, pattern in (
        (
            ("-----BEGIN ",),
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ),
        (("sk-",), r"s(?<!\ws)k-(?:ant-|or-|proj-)?[A-Za-z0-9_\-]{20,}"),
        (
            ("gh", "github_pat_"),
            r"g(?<!\wg)(?:h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_[A-Za-z0-9_]{40,})",
        ),
        (("xox",), r"x(?<!\wx)ox[abposr]-[A-Za-z0-9\-]{10,}"),
        (("AKIA", "AIza"), r"A(?<!\wA)(?:KIA[0-9A-Z]{16}\b|Iza[0-9A-Za-z_\-]{35})"),
        (
            ("eyJ",),
            r"e(?<!\we)yJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        ),
    )
)
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_\-.~+/=]{16,})")
# A Telegram bot token, 8 to 10 digits, a colon, 35 characters: found by its colon.
_TELEGRAM_TAIL = re.compile(r":(?<=[0-9]:)[A-Za-z0-9_\-]{35}\b")
_WORD = re.compile(r"\w")


def shape_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` holds a well-known key shape (unsorted, may overlap)."""
    found: list[tuple[int, int]] = []
    for needles, pattern in _SHAPES:
        for needle in needles:
            if needle in text:
                found.extend(m.span() for m in pattern.finditer(text))
                break
    if "Bearer " in text:
        found.extend(m.span(1) for m in _BEARER.finditer(text))
    if ":" not in text:
        return found
    for match in _TELEGRAM_TAIL.finditer(text):
        start = match.start()
        while start > 0 and "0" <= text[start - 1] <= "9":
            start -= 1
        digits = match.start() - start
        if 8 <= digits <= 10 and (start == 0 or not _WORD.match(text[start - 1])):
            found.append((start, match.end()))
    return found


_NON_SPACE = re.compile(r"\S+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


# --- the spellings of one secret ----------------------------------------------------


def base64_chunks(data: bytes) -> set[str]:
    """The base64 characters that spell ``data`` wherever it sits in a longer stream.

    base64 turns 3 bytes into 4 characters, so how ``data`` is spelt depends on
    its offset modulo 3 in the stream. For each of the three offsets this is
    the run of characters made only of ``data``'s own bits: the characters at
    either end that also hold bits of the neighbouring bytes are left out, so
    the run is the same whatever surrounds it (standard alphabet; see
    :func:`encoded_forms` for the URL-safe one).
    """
    chunks: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        first = -(-8 * offset // 6)  # The first character with no bit of the prefix.
        last = 8 * (offset + len(data)) // 6  # Past the last character whole inside data.
        chunks.add(encoded[first:last])
    return chunks


def text_forms(secret: str) -> set[str]:
    """``secret`` as text inside a serialised document: raw and escaped every usual way."""
    forms = {secret}
    for ensure_ascii in (False, True):
        escaped = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        forms.update((escaped, escaped.replace("/", "\\/")))
        forms.add(json.dumps(escaped, ensure_ascii=ensure_ascii)[1:-1])  # JSON inside JSON.
    # Source code and shells escape fewer characters than JSON: Python's repr, C-style
    # strings with only backslashes or only quotes escaped, shell single-quote splicing.
    forms.update(
        (
            repr(secret)[1:-1],
            secret.replace("\\", "\\\\"),
            secret.replace('"', '\\"'),
            secret.replace("'", "\\'"),
            secret.replace("'", "'\\''"),
            secret.replace("'", "'\"'\"'"),
        )
    )
    return forms


def encoded_forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` that redaction looks for (see the module docstring).

    Each text form (:func:`text_forms`: a secret written into a source file or
    a JSON document is spelt escaped there) is also looked for URL-encoded,
    hex-encoded and base64-encoded: a command that encodes the whole file
    encodes the escaped spelling. For the usual secret, letters, digits and
    ``-_``, the text forms are one and the set stays small.
    """
    texts = text_forms(secret)
    forms = set(texts)
    for text in texts:
        forms.update(
            (
                urllib.parse.quote(text, safe=""),
                urllib.parse.quote(text),
                urllib.parse.quote_plus(text),
            )
        )
        data = text.encode("utf-8")
        hex_lower = data.hex()
        for hexed in (hex_lower, hex_lower.upper()):
            pairs = [hexed[i : i + 2] for i in range(0, len(hexed), 2)]
            forms.update(
                (hexed, "".join("%" + p for p in pairs), "".join("\\x" + p for p in pairs))
            )
        for chunk in base64_chunks(data):
            forms.update((chunk, chunk.replace("+", "-").replace("/", "_")))
    return forms


def _without_space(text: str) -> str:
    return "".join(text.split())


def _skeleton(text: str) -> str:
    """Letters and digits only, lower case: what survives case folding and separators."""
    return _NOT_ALNUM.sub("", text.lower())


def _any_of(words: Iterable[str]) -> re.Pattern[str] | None:
    """One expression that finds any of ``words`` (None for none)."""
    unique = set(words)
    return re.compile(_trie_regex(unique)) if unique else None


def _trie_regex(words: Iterable[str]) -> str:
    """One regular expression matching any of ``words``, longest first at each position.

    A plain alternation of a few hundred literals tries every branch at every
    position; as a trie each position costs one branch per distinct next
    character, and a greedy optional tail prefers the longer word. Runs
    without a branch are emitted in a loop, so a long secret costs no recursion.
    """
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        run: list[str] = []
        while True:
            children = [(c, n) for c, n in node.items() if c]
            if len(children) == 1 and "" not in node:
                char, node = children[0]
                run.append(re.escape(char))
                continue
            break
        if not children:
            return "".join(run)
        branches = [re.escape(c) + emit(n) for c, n in sorted(children)]
        if len(branches) == 1:
            group = "(?:" + branches[0] + ")"
        else:
            group = "(?:" + "|".join(branches) + ")"
        return "".join(run) + (group + "?" if "" in node else group)

    return emit(root)


# --- where the secrets come from ----------------------------------------------------


#: Keys of auth.json and token files whose values are credentials (for outbound checks;
#: redaction covers every string value of those files).
_CREDENTIAL_KEY = re.compile(
    r"token|secret|key|pass|credential|auth|code|cookie|session|bearer|private|refresh|access",
    re.IGNORECASE,
)


def _looks_like_credential(value: str) -> bool:
    """Long, unbroken, letters and digits mixed: an opaque token, not a word or a URL."""
    return (
        len(value) >= 16
        and not any(c.isspace() for c in value)
        and "://" not in value
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def _json_strings(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """``(key path, string)`` for every string inside a JSON value."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _json_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_strings(item, f"{path}[{index}]")


def _json_file_values(path: Path) -> list[tuple[str, str]]:
    try:
        return list(_json_strings(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError):
        return []


class SecretSource:
    """Where a known secret value comes from: a label safe to show, and its weight."""

    __slots__ = ("label", "outbound")

    def __init__(self, label: str, outbound: bool = True) -> None:
        self.label = label
        #: Whether a request carrying it is refused (every value in .env and every
        #: secret-named variable; in JSON files, credential keys and token-like values).
        self.outbound = outbound


def known_secret_sources(environ: Mapping[str, str] | None = None) -> dict[str, SecretSource]:
    """Each known secret value, with where it comes from."""
    from hermes_agent.config.envfile import read_env_file

    env = os.environ if environ is None else environ
    found: dict[str, SecretSource] = {}

    def add(value: str, source: SecretSource) -> None:
        if len(value) < MIN_SECRET_LENGTH or value.isspace():
            return
        known = found.get(value)
        if known is None or (source.outbound and not known.outbound):
            found[value] = source

    for key, value in read_env_file(home.env_path()).values.items():
        add(value, SecretSource(f"{key} (from .env)"))
    files = [("auth.json", home.auth_path())]
    tokens = home.mcp_tokens_dir()
    if tokens.is_dir():
        files += [(f"mcp-tokens/{p.name}", p) for p in sorted(tokens.rglob("*")) if p.is_file()]
    for name, path in files:
        for key, value in _json_file_values(path):
            credential = bool(_CREDENTIAL_KEY.search(key)) or _looks_like_credential(value)
            add(value, SecretSource(f"{key} in {name}", outbound=credential))
    for key, value in env.items():
        if _SECRET_NAME.search(key):
            add(value, SecretSource(f"${key}"))
    return found


def known_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    return set(known_secret_sources(environ))


# --- the redactor -------------------------------------------------------------------

Span = tuple[int, int]
#: Texts up to this long are remembered with their redacted form (at most MEMO_SIZE).
MEMO_TEXT = 256
MEMO_SIZE = 4096


class Redactor:
    """Replaces a fixed set of secret values (in every spelling) and every known key shape."""

    def __init__(self, secrets: Iterable[str] | Mapping[str, SecretSource | str] = ()) -> None:
        sources: dict[str, SecretSource] = {}
        if isinstance(secrets, Mapping):
            for value, source in secrets.items():
                if not isinstance(source, SecretSource):
                    source = SecretSource(source)
                sources[value] = source
        else:
            sources = {value: SecretSource("a secret") for value in secrets}
        forms: set[str] = set()
        #: Per secret sent nowhere: value, label, skeletons of its spellings, and the
        #: spellings themselves (a secret of symbols has too short a skeleton to trust).
        self._outbound: list[tuple[str, str, frozenset[str], frozenset[str]]] = []
        for secret, source in sources.items():
            spellings = encoded_forms(secret)
            compact = {_without_space(f) for f in spellings}
            forms.update(f for f in compact if len(f) >= MIN_FORM_LENGTH)
            if source.outbound:
                skeletons = frozenset(
                    s for s in map(_skeleton, spellings) if len(s) >= MIN_SECRET_LENGTH
                )
                exact = frozenset(f for f in compact if len(f) >= MIN_FORM_LENGTH)
                self._outbound.append((secret, source.label, skeletons, exact))
        self._values = re.compile(_trie_regex(forms)) if forms else None
        #: Every outbound spelling in one expression per kind (skeletons, exact forms):
        #: a text in which neither finds anything carries no secret, told by two searches
        #: instead of a substring test per spelling of every secret.
        self._outbound_skeletons = _any_of(s for _, _, sk, _ in self._outbound for s in sk)
        self._outbound_exact = _any_of(f for _, _, _, ex in self._outbound for f in ex)
        #: Short texts already redacted by this redactor, and their redacted form.
        self._memo: dict[str, str] = {}
        #: The longest spelling looked for: how far back a match can start (streams).
        self.longest = max(map(len, forms), default=0)

    def spans(self, text: str) -> list[Span]:
        """Where ``text`` holds a secret, as sorted, non-overlapping ``(start, end)``."""
        found: list[Span] = []
        if self._values is not None:
            joined = "".join(text.split())
            matches = [m.span() for m in self._values.finditer(joined)]
            if matches:
                if len(joined) == len(text):
                    found.extend(matches)
                else:
                    found.extend(_spans_in_spaced_text(text, joined, matches))
        found.extend(shape_spans(text))
        if len(found) < 2:
            return found
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:
                merged[-1] = (last_start, max(last_end, end))
            else:
                merged.append((start, end))
        return merged

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if len(text) > MEMO_TEXT:
            return _mask(text, self.spans(text))
        # The same short texts pass again and again (an audit record's keys and labels,
        # a tool's name): the answer for one text never changes for this redactor (a new
        # secret builds a new one, with an empty memo), so it is looked up, not searched.
        done = self._memo.get(text)
        if done is None:
            done = _mask(text, self.spans(text))
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[text] = done
        return done

    def outbound_secret(self, text: str, *, allowed: Iterable[str] = ()) -> str | None:
        """The label of a known secret that ``text`` would carry to a host, or None.

        Looser than redaction on purpose (a false alarm costs one refused
        request, a miss costs the secret): the text is also percent-decoded
        (twice) and HTML-unescaped, then compared as letters and digits only,
        in lower case, so case changes and separators between characters do not
        hide a value either. ``allowed`` values are not looked for.
        """
        if not text or not self._outbound:
            return None
        views = {text, html.unescape(text)}
        decoded = text
        for _ in range(2):
            decoded = urllib.parse.unquote(decoded)
            views.update((decoded, urllib.parse.unquote_plus(decoded)))
        # The views joined by a line break, searched once per spelling instead of once per
        # view: neither a spelling nor a view holds whitespace (skeletons are letters and
        # digits; compact forms and views have it taken out), so none matches across one.
        skeletons = "\n".join({_skeleton(view) for view in views})
        compact = "\n".join({_without_space(view) for view in views})
        skip = set(allowed)
        if (
            not skip
            and (self._outbound_skeletons is None or not self._outbound_skeletons.search(skeletons))
            and (self._outbound_exact is None or not self._outbound_exact.search(compact))
        ):
            return None  # No spelling of any secret (the loop below would find none).
        for secret, label, forms, exact in self._outbound:
            if secret in skip:
                continue
            for form in forms:
                if form in skeletons:
                    return label
            for form in exact:
                if form in compact:
                    return label
        return None

    def _addressed_secrets(self, url: str) -> set[str]:
        """Secret values that are themselves the address ``url`` goes to (a webhook URL)."""
        target = urllib.parse.urlsplit(url)
        found: set[str] = set()
        for secret, *_ in self._outbound:
            if "://" not in secret:
                continue
            own = urllib.parse.urlsplit(secret.strip())
            if (
                own.scheme.lower() == target.scheme.lower()
                and own.netloc.lower() == target.netloc.lower()
                and target.path.startswith(own.path)
                and (not own.query or target.query.startswith(own.query))
            ):
                found.add(secret)
        return found

    def request_secret(
        self,
        url: str,
        headers: Iterable[tuple[str, str]] = (),
        body: str = "",
    ) -> str | None:
        """The label of a known secret a request to ``url`` would carry, or None.

        A secret that is itself the address (a Slack or Discord webhook URL in
        ``.env``) may be sent to exactly that address, its owner; any other
        secret anywhere in the request, that one included, is refused.
        """
        addressed = self._addressed_secrets(url)
        parts = [url, *(f"{name}: {value}" for name, value in headers), body]
        for part in parts:
            label = self.outbound_secret(part, allowed=addressed)
            if label is not None:
                return label
        return None


def _spans_in_spaced_text(text: str, joined: str, matches: list[Span]) -> list[Span]:
    """Map spans found in ``joined`` (``text`` without its whitespace) back onto ``text``.

    Usually a match has no whitespace inside it in ``text`` either: then it is
    found with ``str.find`` from the previous one, and confirmed to be the same
    occurrence by counting the whitespace skipped (linear in the text). A match
    spread over several words takes the slower word-by-word map.
    """
    spans: list[Span] = []
    raw_at = joined_at = 0
    for start, end in matches:
        form = joined[start:end]
        pos = text.find(form, raw_at)
        if pos < 0:
            return _spans_by_words(text, matches)
        skipped = text[raw_at:pos]
        joined_pos = joined_at + len("".join(skipped.split()))
        if joined_pos != start:
            return _spans_by_words(text, matches)
        spans.append((pos, pos + len(form)))
        raw_at, joined_at = pos + len(form), end
    return spans


def _spans_by_words(text: str, matches: list[Span]) -> list[Span]:
    starts: list[int] = []
    offsets: list[int] = []  # Where each word starts in the joined text.
    total = 0
    for word in _NON_SPACE.finditer(text):
        starts.append(word.start())
        offsets.append(total)
        total += word.end() - word.start()

    def position(joined_index: int) -> int:
        word = bisect.bisect_right(offsets, joined_index) - 1
        return starts[word] + joined_index - offsets[word]

    return [(position(start), position(end - 1) + 1) for start, end in matches]


def _mask(text: str, spans: list[Span]) -> str:
    if not spans:
        return text
    pieces: list[str] = []
    at = 0
    for start, end in spans:
        pieces.append(text[at:start])
        pieces.append(MASK)
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp: tuple[Any, ...] | None = None
        self.redactor = Redactor()


_cache = _Cache()


@functools.lru_cache(maxsize=8)
def _secret_files(hermes_home_var: str, user_home: str, cwd: str) -> tuple[str, ...]:
    """The files whose content decides the secrets, for one HERMES_HOME (cached).

    As strings: ``os.stat`` on a string costs a third of ``Path.stat`` (which builds
    the string each time), and this is stat'ed for every redacted text. ``user_home``
    and ``cwd`` are given only when they decide where HERMES_HOME is (it is unset,
    or relative).
    """
    return tuple(map(os.fspath, (home.env_path(), home.auth_path(), home.mcp_tokens_dir())))


def _stamp() -> tuple[Any, ...]:
    """What the known secrets depend on, in three stats and the environment's size.

    Called for every redacted text, so it must cost microseconds. hermes writes
    its secret files by atomic rename, so a new ``.env`` or ``auth.json`` shows
    in that file's own stat, and a new or replaced token file in the
    ``mcp-tokens`` directory's mtime; the environment is rescanned when its
    size changes (``.env`` is loaded at start-up).
    """
    where = home.where()
    parts: list[Any] = [where, len(os.environ)]
    for path in _secret_files(*where):
        # A file missing last time (auth.json, mcp-tokens/ in many homes) is looked for
        # without a stat that fails: raising and catching the error cost twice the look.
        if path in _missing and not _exists(path):
            parts.append(None)
            continue
        try:
            st = os.stat(path)
        except OSError:
            parts.append(None)
            _missing.add(path)
        else:
            parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
            _missing.discard(path)
    return tuple(parts)


#: Secret files that were missing at the last look (a hint: see _stamp).
_missing: set[str] = set()


def _exists(path: str) -> bool:
    """Whether ``os.stat(path)`` could succeed, without raising when it cannot.

    ``access(F_OK)`` resolves the path as ``stat`` does, with the effective ids
    (``AT_EACCESS``) where the platform offers it; elsewhere the answer is "maybe",
    and the stat decides.
    """
    if not _ACCESS_EFFECTIVE:
        return True
    return os.access(path, os.F_OK, effective_ids=True)


_ACCESS_EFFECTIVE = os.access in os.supports_effective_ids


def current() -> Redactor:
    """The redactor for the current HERMES_HOME, rebuilt when a secret file changed."""
    stamp = _stamp()
    with _cache.lock:
        if stamp != _cache.stamp:
            _cache.redactor = Redactor(known_secret_sources())
            _cache.stamp = stamp
        return _cache.redactor


_enabled = True


def set_enabled(enabled: bool) -> None:
    """Follow ``redaction.enabled`` (called once when the configuration is loaded)."""
    global _enabled
    _enabled = enabled


def redact(text: str, redactor: Redactor | None = None) -> str:
    """``text`` with every secret replaced by ``[REDACTED]`` (``redactor``: see
    :func:`redact_data`)."""
    if not _enabled or not text:
        return text
    return (redactor or current())(text)


def redact_data(value: Any, redactor: Redactor | None = None) -> Any:
    """``value`` (dicts, lists, tuples, strings, nested) with every string redacted.

    Call it on a structure *before* ``json.dumps``: afterwards a secret that
    holds ``"`` or ``\\`` is spelt with escapes. Dictionary keys that are
    strings are redacted too (a model can put anything in a key); other values
    (numbers, None, booleans) come back as they are. Tuples come back as lists.
    ``redactor``: the one :func:`current` gave the caller a moment ago, in the same
    step (the gate's check and its audit line), which spares looking again.
    """
    if not _enabled:
        return value
    return _redact_tree(value, redactor or current())


_SCALARS = frozenset({int, float, bool})


def _redact_tree(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor(value) if value else value
    if value is None or type(value) in _SCALARS:
        return value  # Before the Mapping check, which is an ABC's (slow) for every number.
    if type(value) is dict:
        # A plain dict (an audit record, a tool call's arguments) is walked inline: a
        # function call per key and per value cost more than redacting them, for the
        # short strings a record is mostly made of (found in the redactor's memo).
        # (A long text is not looked up: hashing it would cost, and it is never kept.)
        memo = redactor._memo
        cleaned: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and k:
                k = (memo.get(k) if len(k) <= MEMO_TEXT else None) or redactor(k)
            if type(v) is str:
                if v:
                    v = (memo.get(v) if len(v) <= MEMO_TEXT else None) or redactor(v)
            elif v is not None and type(v) not in _SCALARS:
                v = _redact_tree(v, redactor)
            cleaned[k] = v
        return cleaned
    if isinstance(value, Mapping):
        return {
            (redactor(k) if isinstance(k, str) and k else k): _redact_tree(v, redactor)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_tree(item, redactor) for item in value]
    return value


def redact_json_text(text: str, redactor: Redactor | None = None) -> str:
    """A JSON document (tool-call arguments) with its secrets removed, still valid JSON.

    The document is decoded and redacted as data, so ``\\u0041``-style escapes
    cannot hide a value; when nothing changes it comes back byte for byte.
    Text that is not JSON is redacted as text.
    """
    if not _enabled or not text:
        return text
    redactor = redactor or current()  # One look at the secret files for both passes.
    try:
        decoded = json.loads(text)
    except ValueError:
        return redactor(text)
    cleaned = _redact_tree(decoded, redactor)
    if cleaned == decoded:
        return redactor(text)
    return json.dumps(cleaned, ensure_ascii=False)


def redact_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A chat message (OpenAI format) redacted as data; tool-call arguments as JSON.

    Arguments are a JSON document inside a string: decoded first, so a value
    spelt with ``\\u`` escapes is found too (:func:`redact_json_text`).
    """
    cleaned: dict[str, Any] = redact_data(message)
    if not _enabled or not isinstance(message.get("tool_calls"), list):
        return cleaned
    for call, original in zip(cleaned["tool_calls"], message["tool_calls"], strict=False):
        function = call.get("function") if isinstance(call, dict) else None
        given = original.get("function") if isinstance(original, Mapping) else None
        if isinstance(function, dict) and isinstance(given, Mapping):
            arguments = given.get("arguments")
            if isinstance(arguments, str):
                function["arguments"] = redact_json_text(arguments)
    return cleaned


# --- streams ------------------------------------------------------------------------


class StreamRedactor:
    """Redacts a text that arrives in pieces (a streamed answer) without showing a secret.

    Shown text cannot be taken back, so only a prefix that later pieces cannot
    change is released: up to the last whitespace at least :data:`HOLD`
    characters before the end, never into a secret found so far, and never
    into a block of lines that look like an encoding (wrapped base64, hex
    bytes with spaces between them), whose next line could complete a
    secret's spelling. :meth:`feed` returns what became releasable;
    :meth:`text` everything released (with ``final``: the whole text, redacted).
    """

    #: Characters held back besides the last word.
    HOLD = 16

    def __init__(self) -> None:
        self._raw = ""
        self._cut = 0  # How much of the raw text is released.
        self._released = ""

    def feed(self, delta: str) -> str:
        """Add ``delta``; return the newly releasable redacted text."""
        self._raw += delta
        return self._advance(final=False)

    def finish(self) -> str:
        """All that is left, redacted (the stream ended)."""
        return self._advance(final=True)

    def reset(self) -> None:
        """Forget everything (the streamed answer was void, e.g. a retried call)."""
        self._raw = ""
        self._cut = 0
        self._released = ""

    def text(self, final: bool = False) -> str:
        """The redacted text released so far (with ``final``: everything)."""
        if final:
            self._advance(final)
        return self._released

    def _advance(self, final: bool) -> str:
        raw = self._raw
        spans: list[Span] = []
        if _enabled:
            # Only the unreleased end, and as far before it as a match can start, is
            # searched again: a long answer costs linear time, not quadratic. (Key shapes
            # such as a PEM block are held as encoded lines, see _encoded_tail_start.)
            redactor = current()
            start_at = max(0, self._cut - redactor.longest - 256)
            spans = [(s + start_at, e + start_at) for s, e in redactor.spans(raw[start_at:])]
        if final:
            cut = len(raw)
        else:
            cut = _last_space(raw, len(raw) - self.HOLD) + 1
            cut = _encoded_tail_start(raw, cut)
            for start, end in spans:
                if start < cut < end:  # Never release part of a secret...
                    cut = start if start >= self._cut else end  # ...or mask all of it.
                    break
        if cut <= self._cut:
            return ""
        window = [
            (max(start, self._cut) - self._cut, min(end, cut) - self._cut)
            for start, end in spans
            if end > self._cut and start < cut
        ]
        new = _mask(raw[self._cut : cut], window)
        if self._released.endswith(MASK) and new.startswith(MASK) and window[0][0] == 0:
            new = new[len(MASK) :]  # The rest of a secret already shown as masked.
        self._cut = cut
        self._released += new
        return new


class LogRedactor:
    """Redacts a process's output read in chunks (an MCP server's stderr) for a log file.

    Redacting each chunk on its own wrote a secret that straddled two reads in clear
    (half in each, neither recognised); a pipe read ends wherever the writer's
    buffer did. Only complete lines are released, and not a trailing block of
    encoded-looking lines (a PEM key, wrapped base64) whose next line could complete
    a secret's spelling. Unlike :class:`StreamRedactor` the text released is not
    kept: only the unreleased end and a short context before it (where a match
    that ends in the new text can start), so a server writing for days costs
    bounded memory. A line longer than :data:`MAX_HOLD` is released in pieces,
    never cut inside a secret found in it.
    """

    MAX_HOLD = 256 * 1024

    def __init__(self) -> None:
        self._context = ""  # The end of what was released, unredacted (matches start here).
        self._held = ""

    def feed(self, text: str) -> str:
        """Add ``text``; return the newly releasable redacted text."""
        return self._advance(self._held + text, final=False)

    def finish(self) -> str:
        """Everything held, redacted (the output ended, or was idle for a while)."""
        return self._advance(self._held, final=True)

    def _advance(self, pending: str, final: bool) -> str:
        raw = self._context + pending
        base = len(self._context)
        redactor = current() if _enabled else None
        if final:
            cut = len(raw)
        else:
            # A carriage return ends a line too: a progress bar redraws its line with
            # one, and would otherwise be held until the command ends.
            cut = max(raw.rfind("\n", base), raw.rfind("\r", base)) + 1
            cut = _encoded_tail_start(raw, cut) if cut else base
            if len(raw) - max(cut, base) > self.MAX_HOLD:
                cut = len(raw) - (redactor.longest * 2 + 256 if redactor else 0)
            cut = max(cut, base)
        spans = redactor.spans(raw) if redactor is not None else []
        for start, end in spans:
            if start < cut < end:  # Never release part of a secret.
                cut = start if start >= base else end
                break
        window = [
            (max(start, base) - base, min(end, cut) - base)
            for start, end in spans
            if end > base and start < cut
        ]
        out = _mask(raw[base:cut], window)
        self._held = raw[cut:]
        keep = (redactor.longest * 2 + 256) if redactor is not None else 0
        self._context = raw[max(0, cut - keep) : cut]
        return out


#: Lines at the end of a text that look like an encoding: one unbroken run of base64 or
#: hex characters, or hex bytes separated by spaces or colons (base64, xxd -p, od), the
#: last line perhaps still being written.
_ENCODED_LINE = r"[ \t]*(?:[A-Za-z0-9+/=_%\\-]{16,}|(?:[0-9A-Fa-f]{2,8}[ :]+){3,}[0-9A-Fa-f]{0,8})"
_ENCODED_PARTIAL = r"[ \t]*(?:[A-Za-z0-9+/=_%\\-]*|(?:[0-9A-Fa-f]{1,8}[ :]+)*[0-9A-Fa-f]{0,8})"
_FULL_LINE = re.compile(rf"{_ENCODED_LINE}[ \t]*\r?")
_PARTIAL_LINE = re.compile(_ENCODED_PARTIAL)
#: How far back a block of encoded lines is held (a secret's spelling is far shorter).
_ENCODED_BLOCK_MAX = 4096


def _encoded_tail_start(text: str, end: int) -> int:
    """Where the block of encoded-looking lines ending ``text[:end]`` starts (``end``: none).

    The last line may still be incomplete; lines are tested from the end backwards,
    so ordinary prose costs one or two regular-expression calls.
    """
    line_start = text.rfind("\n", 0, end) + 1
    if not _PARTIAL_LINE.fullmatch(text, line_start, end):
        return end
    start = line_start
    limit = max(0, end - _ENCODED_BLOCK_MAX)
    while start > limit:
        previous = text.rfind("\n", 0, start - 1) + 1
        if not _FULL_LINE.fullmatch(text, previous, start - 1):
            break
        start = previous
    return start if start < line_start or line_start < end else end


def _last_space(text: str, before: int) -> int:
    """Index of the last whitespace in ``text[:before]`` (-1: none)."""
    if before <= 0:
        return -1
    return max(text.rfind(" ", 0, before), text.rfind("\n", 0, before), text.rfind("\t", 0, before))


# --- outbound requests ----------------------------------------------------------------


class SecretInRequestError(HermesError):
    """A request would carry a known secret to a host; it was not sent."""


def outbound_secret(text: str) -> str | None:
    """The label of a known secret ``text`` carries in any spelling, or None.

    Checked whatever ``redaction.enabled`` says: that switch is for reading
    what hermes shows, never for letting a secret leave.
    """
    return current().outbound_secret(text)


def carries_secret(text: str) -> bool:
    return outbound_secret(text) is not None


def refuse_if_secret(
    url: str,
    headers: Iterable[tuple[str, str]] = (),
    body: str | bytes = b"",
    *,
    what: str = "the request",
) -> None:
    """Raise :class:`SecretInRequestError` if a request would carry a known secret.

    Checks every part of the URL (host, user info, path, query, fragment),
    each header and the body. The message names the secret's variable, never
    its value; ``what`` names the request for the user ("web_fetch").
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    label = current().request_secret(url, headers, text)
    if label is not None:
        raise SecretInRequestError(
            f"refused: {what} would send the value of {label} to "
            f"{urllib.parse.urlsplit(url).hostname or 'a host'}; secrets never leave "
            "hermes except to the service they belong to"
        )


def httpx_request_guard(
    *, what: str, credentials: Iterable[str] = (), origin: str | None = None
) -> Callable[[Any], Awaitable[None]]:
    """An ``httpx`` request event hook that refuses requests carrying a known secret.

    httpx calls request hooks before every request it sends, including each
    redirect it follows, so a redirect to a URL that holds a secret is refused
    before anything leaves. ``credentials`` are header names hermes itself
    fills with a key for ``origin`` (``scheme://host:port``): they are
    exempt only while the request still goes there.
    """
    exempt_names = {name.lower() for name in credentials}

    async def hook(request: Any) -> None:
        url = str(request.url)
        here = urllib.parse.urlsplit(url)
        same_origin = origin is not None and _origin(here) == origin
        headers = [
            (name, value)
            for name, value in request.headers.items()
            if not (same_origin and name.lower() in exempt_names)
        ]
        try:
            body: bytes = request.content
        except Exception:  # A streaming body that was not read: nothing to look at yet.
            body = b""
        refuse_if_secret(url, headers, body, what=what)

    return hook


def _origin(parts: urllib.parse.SplitResult) -> str:
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, the form :func:`httpx_request_guard` compares."""
    return _origin(urllib.parse.urlsplit(url))


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line passes :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        # A record goes to several handlers (file and stderr) with this formatter:
        # formatted and redacted once, not once per handler.
        cached = record.__dict__.get("_hermes_redacted")
        if cached is not None and cached[0] is self:
            return str(cached[1])
        line = redact(super().format(record))
        record.__dict__["_hermes_redacted"] = (self, line)
        return line
