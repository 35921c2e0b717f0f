"""Cost of redacting a typical tool result: every spelling of the secrets vs plain values only.

Why it exists: every tool result, stored message, log line and displayed line passes
:func:`hermes_agent.redact.redact`. Matching each known secret also JSON-escaped,
URL-encoded, base64 at three alignments, hex, and across whitespace multiplies the number
of strings looked for by about ten to twenty; this measures what that costs on a typical
tool result (20 KB of source code and log lines) with 10 known secrets, against the same
engine looking for the plain values only, in the same run.

Variants, timed interleaved round by round so they see the same machine noise:

- ``plain``: the redactor with only the raw values in its pattern (what "before" matched;
  the key shapes are searched in every variant);
- ``all``: every spelling (the shipped redactor);
- ``old``: the implementation this replaced (one alternation of the raw values and one
  alternation of the key shapes), for reference.

Each on two texts: ``clean`` (no secret in it, the usual case) and ``hits`` (the same
text with 4 secrets in it: raw, JSON-escaped, base64 and hex). Also reported: the time to
build the redactor when the secret set changes, and one outbound-request check.

HERMES_HOME points at an empty temporary directory: no user file is read.

Usage: ``.venv/bin/python bench/redaction.py [--rounds N] [--repeat N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEXT_BYTES = 20_000
SECRETS = 10

# The key shapes as the old implementation searched them: one alternation.
OLD_SHAPES = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\bsk-(?:ant-|or-|proj-)?[A-Za-z0-9_\-]{20,}",
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",
            r"\bgithub_pat_[A-Za-z0-9_]{40,}",
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
            r"\bAKIA[0-9A-Z]{16}\b",
            r"\bAIza[0-9A-Za-z_\-]{35}",
            r"\b\d{8,10}:[A-Za-z0-9_\-]{35}\b",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            r"(?<=Bearer )[A-Za-z0-9_\-.~+/=]{16,}",
        )
    )
)


def make_secrets() -> list[str]:
    """Ten secrets shaped like real ones: API keys, a token, two with quotes and slashes."""
    rng = random.Random(20261207)
    alnum = string.ascii_letters + string.digits

    def pick(n: int, alphabet: str = alnum) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    return [
        "sk-or-v1-" + pick(48, "0123456789abcdef"),
        "sk-ant-api03-" + pick(60, alnum + "-_"),
        "ghp_" + pick(36),
        "xoxb-" + pick(12, string.digits) + "-" + pick(24),
        pick(32, "0123456789abcdef"),
        pick(40, alnum + "+/") + "==",
        "tvly-" + pick(32),
        pick(24, alnum + "-_"),
        'pa"ss\\' + pick(16) + "/x+y=",
        "postgres://app:" + pick(20) + "@db.internal:5432/app",
    ]


def make_text(secrets: list[str], with_hits: bool) -> str:
    """~20 KB of hermes' own source and log-like lines; with ``with_hits``, 4 secrets in it."""
    sources = sorted((ROOT / "src" / "hermes_agent").rglob("*.py"))
    code = "".join(p.read_text(encoding="utf-8") for p in sources[:12])
    lines = [
        f"2026-12-07T10:{i % 60:02d}:00Z INFO request id={i:06x} took {i % 97} ms status=200"
        for i in range(120)
    ]
    text = (code[:14_000] + "\n".join(lines))[:TEXT_BYTES]
    if not with_hits:
        return text
    parts = [
        f"\nexport TOKEN={secrets[0]}\n",
        json.dumps({"password": secrets[8]}),
        "\n" + base64.b64encode(b"x:" + secrets[3].encode()).decode() + "\n",
        secrets[6].encode().hex() + "\n",
    ]
    quarter = len(text) // 4
    pieces = [text[i * quarter : (i + 1) * quarter] for i in range(4)]
    return "".join(piece + extra for piece, extra in zip(pieces, parts, strict=True))


def old_redactor(secrets: list[str]) -> Callable[[str], str]:
    ordered = sorted(set(secrets), key=len, reverse=True)
    values = re.compile("|".join(map(re.escape, ordered)))

    def redact(text: str) -> str:
        return OLD_SHAPES.sub("[REDACTED]", values.sub("[REDACTED]", text))

    return redact


def time_one(fn: Callable[[str], object], text: str, repeat: int) -> float:
    """Microseconds per call of ``fn(text)``, averaged over ``repeat`` calls."""
    start = time.perf_counter_ns()
    for _ in range(repeat):
        fn(text)
    return (time.perf_counter_ns() - start) / repeat / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["HERMES_HOME"] = str(Path(scratch) / "hermes-home")
        from hermes_agent import redact

        secrets = make_secrets()
        started = time.perf_counter()
        full = redact.Redactor(secrets)
        build_ms = (time.perf_counter() - started) * 1000
        forms = len({f for s in secrets for f in redact.encoded_forms(s)})
        plain = redact.Redactor(secrets)
        plain._values = re.compile(redact._trie_regex(secrets))  # Raw values only.
        variants: dict[str, Callable[[str], object]] = {
            "plain": plain,
            "all": full,
            "old": old_redactor(secrets),
        }
        texts = {"clean": make_text(secrets, False), "hits": make_text(secrets, True)}
        for text in texts.values():  # Warm-up, and a check that the variants agree.
            for fn in variants.values():
                fn(text)
        assert all(s not in str(full(texts["hits"])) for s in secrets)
        assert str(full(texts["clean"])) == texts["clean"], "a false positive"
        times: dict[str, dict[str, list[float]]] = {t: {v: [] for v in variants} for t in texts}
        for _ in range(args.rounds):
            for tname, text in texts.items():
                for vname, fn in variants.items():
                    times[tname][vname].append(time_one(fn, text, args.repeat))
        url = "https://example.com/search?q=" + "word+" * 40
        outbound_us = statistics.median(
            time_one(full.outbound_secret, url, args.repeat) for _ in range(args.rounds)
        )

    results: dict[str, Any] = {}
    print(
        f"redaction of a {TEXT_BYTES // 1000} KB tool result with {SECRETS} known secrets "
        f"({forms} spellings), {args.rounds} rounds x {args.repeat} calls"
    )
    print(f"  {'text':<6} {'plain':>10} {'all':>10} {'old':>10} {'all/plain':>10} {'all/old':>8}")
    for tname, per in times.items():
        med = {v: statistics.median(vals) for v, vals in per.items()}
        results[tname] = {
            **{f"{v}_us": round(m, 1) for v, m in med.items()},
            "ratio_all_to_plain": round(med["all"] / med["plain"], 2),
            "ratio_all_to_old": round(med["all"] / med["old"], 2),
        }
        print(
            f"  {tname:<6} {med['plain']:>7.0f} us {med['all']:>7.0f} us {med['old']:>7.0f} us "
            f"{med['all'] / med['plain']:>9.2f}x {med['all'] / med['old']:>7.2f}x"
        )
    print(f"  building the redactor for {SECRETS} secrets: {build_ms:.1f} ms (once per change)")
    print(f"  one outbound-request check of a 230-character URL: {outbound_us:.0f} us")
    if args.json:
        record = {
            "benchmark": "redaction",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "nproc": os.cpu_count(),
            "text_bytes": TEXT_BYTES,
            "secrets": SECRETS,
            "spellings": forms,
            "build_ms": round(build_ms, 1),
            "outbound_check_us": round(outbound_us, 1),
            **results,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
