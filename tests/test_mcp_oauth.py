"""OAuth 2.1 for MCP servers: login, the token store, refresh, and what is refused.

Real peers only: the TypeScript SDK's OAuth demo server (``--oauth`` and
``--oauth-strict``, which requires RFC 8707 ``resource``) for the headless
login through `hermes mcp login` and the tools listed with the token by a new
process; and tests/peers/oauth_server.py, a strict authorization server of our
own that issues short-lived tokens with refresh tokens (the demo issues none),
for refresh ahead of expiry, after a restart, across two processes, and for
the refusals (no S256, a wrong ``iss`` or ``state``). The "browser" is an
HTTP GET of the authorization URL (both servers approve at once with a 302),
whose redirect is delivered to hermes' 127.0.0.1 listener or pasted.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.auth import AuthorizationCodeResult

from conftest import HERMES, clean_env
from hermes_agent import redact
from hermes_agent.errors import HermesError
from hermes_agent.mcp import oauth
from hermes_agent.mcp.oauth_store import TokenStore
from peers.daemons import free_port, port_open, stop_process
from peers.oauth_server import OAuthServer, dump

TESTS = Path(__file__).parent
SDK_EXAMPLES = TESTS / "peers/node_modules/@modelcontextprotocol/sdk/dist/esm/examples"
DEMO = SDK_EXAMPLES / "server/simpleStreamableHttp.js"
REQUEST = TESTS / "mcp_oauth_request.py"

pytestmark = pytest.mark.timeout(180)


# --- peers --------------------------------------------------------------------------


class Demo:
    """The TypeScript SDK's demo server with its OAuth server (two ports)."""

    def __init__(self, *flags: str) -> None:
        self.port, self.auth_port = free_port(), free_port()
        env = dict(os.environ, MCP_PORT=str(self.port), MCP_AUTH_PORT=str(self.auth_port))
        self.proc = subprocess.Popen(
            ["node", str(DEMO), *flags],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not (port_open(self.port) and port_open(self.auth_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop_process(self.proc, 5)
                raise RuntimeError("the OAuth demo server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/mcp"  # Its metadata says localhost.

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.auth_port}/"


def _demo(*flags: str) -> Iterator[Demo]:
    if not DEMO.exists():
        pytest.skip("the TypeScript SDK's OAuth demo server is not installed (tests/peers)")
    demo = Demo(*flags)
    try:
        yield demo
    finally:
        stop_process(demo.proc, 5)


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    yield from _demo("--oauth")


@pytest.fixture(scope="module")
def demo_strict() -> Iterator[Demo]:
    yield from _demo("--oauth", "--oauth-strict")


@pytest.fixture
def peer_factory() -> Iterator[Any]:
    started: list[OAuthServer] = []

    def make(**options: Any) -> OAuthServer:
        server = OAuthServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# --- the user's side ----------------------------------------------------------------


def follow_authorize(authorization_url: str) -> str:
    """The browser: open the authorization URL; the server approves at once (a 302)."""
    response = httpx.get(authorization_url, follow_redirects=False, timeout=10)
    assert response.status_code in (302, 303), response.text
    return response.headers["location"]


async def browser(authorization_url: str) -> AuthorizationCodeResult:
    """An authorizer that approves and hands back the redirect, as the listener would."""
    location = await asyncio.to_thread(follow_authorize, authorization_url)
    params = oauth.parse_redirect(location)
    return AuthorizationCodeResult(
        code=params["code"], state=params["state"], iss=params.get("iss")
    )


def login(name: str, url: str, home: Path, **kwargs: Any) -> oauth.LoginResult:
    kwargs.setdefault("authorizer", browser)
    kwargs.setdefault("open_browser", False)
    kwargs.setdefault("out", io.StringIO())
    return asyncio.run(oauth.login_async(name, url, home, **kwargs))


class Screen(io.StringIO):
    """What hermes prints during a login, with a wait for the authorization URL."""

    def __init__(self) -> None:
        super().__init__()
        self.url_shown = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "/authorize?" in self.getvalue():
            self.url_shown.set()
        return written

    def authorization_url(self) -> str:
        assert self.url_shown.wait(30), self.getvalue()
        found = re.search(r"https?://\S+/authorize\?\S+", self.getvalue())
        assert found, self.getvalue()
        return found.group(0)


def request_in_new_process(
    name: str, url: str, home: Path, wait: bool = False
) -> subprocess.Popen[str]:
    """A new process that sends one request (on :func:`go` when ``wait``)."""
    proc = subprocess.Popen(
        [sys.executable, str(REQUEST), name, url, *(["--wait"] if wait else [])],
        env=clean_env(home),
        stdin=subprocess.PIPE if wait else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    return proc


def go(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def token_file(home: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "mcp-tokens" / f"{name}.json").read_text())
    return data["issuers"]


def assert_private(home: Path, name: str) -> None:
    tokens = home / "mcp-tokens"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o700
    for path in (tokens / f"{name}.json", tokens / f"{name}.client.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def assert_nowhere(secrets: set[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a token leaked into output or a log"


def logs_text(home: Path) -> str:
    logs = home / "logs"
    if not logs.is_dir():
        return ""
    return "".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


# --- the demo server: headless login through the CLI, then a restart ----------------------


@pytest.mark.peer("mcp-oauth-demo")
def test_headless_cli_login_then_a_new_process_lists_the_tools(
    demo: Demo, hermes_home: Path
) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text(
        f"mcp_servers:\n  demo:\n    url: {demo.url}\n    auth: oauth\n"
    )
    env = clean_env(hermes_home)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.Popen(
        [str(HERMES), "mcp", "login", "demo"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    shown = ""
    while "/authorize?" not in shown:
        line = proc.stderr.readline()
        assert line, f"hermes mcp login ended without a URL: {shown}"
        shown += line
    authorization_url = re.search(r"http://\S+/authorize\?\S+", shown)
    assert authorization_url
    # The person's browser: approve, then be redirected to hermes' 127.0.0.1 listener.
    location = follow_authorize(authorization_url.group(0))
    assert location.startswith("http://127.0.0.1:")
    callback = httpx.get(location, timeout=10)
    assert callback.status_code == 200
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "logged in (authorized)" in out

    assert_private(hermes_home, "demo")
    issuers = token_file(hermes_home, "demo")
    assert list(issuers) == [demo.issuer]
    record = issuers[demo.issuer]
    assert record["expires_at"] == pytest.approx(record["obtained_at"] + record["expires_in"])
    token = record["access_token"]

    # A restart: a new process connects with the stored token, no login.
    listed = subprocess.run(
        [str(HERMES), "mcp", "test", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "mcp__demo__greet" in listed.stdout
    assert "ready" in listed.stdout
    assert_nowhere({token}, shown, out, err, listed.stdout, listed.stderr, logs_text(hermes_home))

    again = subprocess.run(
        [str(HERMES), "mcp", "login", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert again.returncode == 0 and "logged in (valid)" in again.stdout, again.stderr

    logout = subprocess.run(
        [str(HERMES), "mcp", "logout", "demo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert logout.returncode == 0 and "tokens removed" in logout.stdout
    assert not (hermes_home / "mcp-tokens" / "demo.json").exists()
    assert not (hermes_home / "mcp-tokens" / "demo.client.json").exists()


@pytest.mark.peer("mcp-oauth-demo")
def test_strict_demo_server_gets_resource_and_serves_tools_with_the_token(
    demo_strict: Demo, hermes_home: Path
) -> None:
    result = login("strict", demo_strict.url, hermes_home)
    assert result.how == "authorized"
    assert result.status.logged_in and result.status.issuer == demo_strict.issuer

    async def tools() -> list[str]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        auth = oauth.auth_for("strict", demo_strict.url, hermes_home)
        async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
            transport = streamable_http_client(demo_strict.url, http_client=http)
            async with Client(transport, mode="legacy") as client:
                return [tool.name for tool in (await client.list_tools()).tools]

    assert "greet" in asyncio.run(tools())


# --- refresh --------------------------------------------------------------------------


@pytest.mark.peer("oauth-server")
def test_refresh_ahead_of_expiry_in_a_new_process_keeps_an_unrotated_refresh_token(
    peer_factory: Any, hermes_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    peer = peer_factory(token_lifetime=6, rotate_refresh=False)
    out = io.StringIO()
    login("ahead", peer.url, hermes_home, out=out)
    first = token_file(hermes_home, "ahead")[peer.issuer]
    assert first["expires_at"] == pytest.approx(time.time() + 6, abs=2)
    proc = request_in_new_process("ahead", peer.url, hermes_home, wait=True)
    # Within the last quarter of the token's life (1.5 s), but before it expires.
    time.sleep(max(first["expires_at"] - 1.2 - time.time(), 0))
    go(proc)
    code, stdout, stderr = finished(proc)
    assert code == 0, stderr
    assert json.loads(stdout) == {"status": 200}
    assert len(peer.refreshes) == 1, dump(peer)
    refreshed_at, old_expiry = peer.refreshes[0]
    assert refreshed_at < old_expiry, "the refresh came after the token had expired"

    second = token_file(hermes_home, "ahead")[peer.issuer]
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] == first["refresh_token"]  # Not rotated: kept.
    assert second["expires_at"] == pytest.approx(refreshed_at + 6, abs=1.5)
    assert_private(hermes_home, "ahead")

    # RFC 8707: resource on the authorization, the code exchange and the refresh.
    sent = [r for r in peer.requests if r["path"] in ("/authorize", "/token")]
    assert [r["path"] for r in sent] == ["/authorize", "/token", "/token"]
    assert all(r["params"].get("resource") == peer.url for r in sent), dump(peer)
    assert sent[1]["params"]["grant_type"] == "authorization_code"
    assert sent[2]["params"]["grant_type"] == "refresh_token"
    assert_nowhere(peer.issued_secrets(), out.getvalue(), stdout, stderr, caplog.text)


@pytest.mark.peer("oauth-server")
def test_a_restored_expired_token_is_refreshed_not_sent(
    peer_factory: Any, hermes_home: Path
) -> None:
    """python-sdk #3250: a token loaded from storage must not count as valid for ever."""
    peer = peer_factory(token_lifetime=2, rotate_refresh=True)
    login("expired", peer.url, hermes_home)
    before = token_file(hermes_home, "expired")[peer.issuer]
    time.sleep(max(before["expires_at"] + 0.2 - time.time(), 0))
    seen = len(peer.requests)

    code, stdout, stderr = finished(request_in_new_process("expired", peer.url, hermes_home))
    assert code == 0, stderr
    assert json.loads(stdout) == {"status": 200}
    assert len(peer.refreshes) == 1
    # The restarted process never presented the expired token: it refreshed first.
    after_restart = peer.requests[seen:]
    assert [r["path"] for r in after_restart] == ["/token", "/mcp"], dump(peer)
    assert after_restart[1]["token"] != before["access_token"]
    after = token_file(hermes_home, "expired")[peer.issuer]
    assert after["refresh_token"] != before["refresh_token"]  # Rotated: the new one stored.


@pytest.mark.peer("oauth-server")
def test_two_processes_at_once_refresh_once(peer_factory: Any, hermes_home: Path) -> None:
    # Rotating refresh tokens: a second refresh with the same token would be refused
    # and log the user out; the slow token endpoint makes the two overlap.
    peer = peer_factory(token_lifetime=2, rotate_refresh=True, refresh_delay=0.5)
    login("twice", peer.url, hermes_home)
    before = token_file(hermes_home, "twice")[peer.issuer]
    time.sleep(max(before["expires_at"] + 0.1 - time.time(), 0))

    procs = [request_in_new_process("twice", peer.url, hermes_home, wait=True) for _ in range(2)]
    go(*procs)
    results = [finished(p) for p in procs]
    for code, stdout, stderr in results:
        assert code == 0, stderr
        assert json.loads(stdout) == {"status": 200}
    assert len(peer.refreshes) == 1, dump(peer)


@pytest.mark.peer("oauth-server")
def test_a_refused_token_is_refreshed_before_any_login(
    peer_factory: Any, hermes_home: Path
) -> None:
    peer = peer_factory(token_lifetime=3600)
    login("revoked", peer.url, hermes_home)
    peer.revoke_access()  # The server drops the access token early.

    code, stdout, stderr = finished(request_in_new_process("revoked", peer.url, hermes_home))
    assert code == 0, stderr  # Not "needs a login": the refresh token still works.
    assert json.loads(stdout) == {"status": 200}
    assert len(peer.refreshes) == 1

    # `hermes mcp login` refreshes too instead of asking the user.
    peer.revoke_access()
    result = login("revoked", peer.url, hermes_home, authorizer=None, timeout=20)
    assert result.how == "refreshed"
    assert len(peer.refreshes) == 2
    assert [r["path"] for r in peer.requests].count("/authorize") == 1


# --- what is refused --------------------------------------------------------------------


@pytest.mark.peer("oauth-server")
def test_a_server_without_s256_is_refused(peer_factory: Any, hermes_home: Path) -> None:
    peer = peer_factory(challenge_methods=("plain",))
    with pytest.raises(HermesError, match="S256"):
        login("plain", peer.url, hermes_home)
    assert not any(r["path"] == "/authorize" for r in peer.requests)
    assert not (hermes_home / "mcp-tokens" / "plain.json").exists()


@pytest.mark.peer("oauth-server")
def test_a_redirect_from_another_issuer_is_refused(peer_factory: Any, hermes_home: Path) -> None:
    peer = peer_factory(wrong_iss=True)
    with pytest.raises(HermesError, match="iss"):
        login("iss", peer.url, hermes_home)
    assert not any(r["path"] == "/token" for r in peer.requests)
    assert not (hermes_home / "mcp-tokens" / "iss.json").exists()


@pytest.mark.peer("oauth-server")
def test_a_redirect_with_another_state_is_refused(peer_factory: Any, hermes_home: Path) -> None:
    peer = peer_factory()

    async def forged(authorization_url: str) -> AuthorizationCodeResult:
        real = await browser(authorization_url)
        return real.model_copy(update={"state": "forged-" + (real.state or "")})

    with pytest.raises(HermesError, match=r"[Ss]tate"):
        login("state", peer.url, hermes_home, authorizer=forged)
    assert not any(r["path"] == "/token" for r in peer.requests)


@pytest.mark.peer("oauth-server")
def test_the_listener_ignores_other_states_and_the_paste_fallback_works(
    peer_factory: Any, hermes_home: Path
) -> None:
    peer = peer_factory()
    screen = Screen()
    read_fd, write_fd = os.pipe()
    paste = os.fdopen(read_fd, "r")
    typed = os.fdopen(write_fd, "w")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = asyncio.run(
                oauth.login_async(
                    "paste",
                    peer.url,
                    hermes_home,
                    out=screen,
                    paste=paste,
                    open_browser=False,
                    timeout=60,
                )
            )
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        location = follow_authorize(screen.authorization_url())
        forged = re.sub(r"state=[^&]+", "state=forged", location)
        # A page calling the listener with another state is turned away; the login waits.
        assert httpx.get(forged, timeout=10).status_code == 400
        typed.write(forged + "\n")
        typed.flush()
        # The user pastes the real address (their browser could not reach 127.0.0.1).
        typed.write(location + "\n")
        typed.flush()
        worker.join(60)
    finally:
        typed.close()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].how == "authorized"
    assert "its state differs" in screen.getvalue()
    assert "paste it here" in screen.getvalue()


@pytest.mark.peer("oauth-server")
def test_without_a_person_a_login_is_reported_not_started(
    peer_factory: Any, hermes_home: Path
) -> None:
    peer = peer_factory()
    assert not oauth.status("nobody", hermes_home).logged_in
    code, _stdout, stderr = finished(request_in_new_process("nobody", peer.url, hermes_home))
    assert code == 3
    assert "hermes mcp login nobody" in stderr
    assert not any(r["path"] in ("/register", "/authorize") for r in peer.requests)


@pytest.mark.peer("oauth-server")
def test_the_login_has_its_own_deadline(peer_factory: Any, hermes_home: Path) -> None:
    peer = peer_factory()
    started = time.monotonic()
    with pytest.raises(HermesError, match=r"deadline|timed out"):
        login("late", peer.url, hermes_home, authorizer=None, timeout=1.5)
    assert time.monotonic() - started < 15


@pytest.mark.peer("oauth-server")
def test_tokens_are_secrets_to_redaction_and_logout_forgets_them(
    peer_factory: Any, hermes_home: Path
) -> None:
    peer = peer_factory()
    login("secret", peer.url, hermes_home)
    issued = token_file(hermes_home, "secret")[peer.issuer]
    for value in (issued["access_token"], issued["refresh_token"]):
        assert value not in redact.redact(f"the tool printed {value} here")
    status = oauth.status("secret", hermes_home)
    assert status.logged_in and status.refreshable
    assert "at-" not in status.describe() and "rt-" not in status.describe()
    assert oauth.logout("secret", hermes_home) is True
    assert oauth.logout("secret", hermes_home) is False
    assert TokenStore("secret", hermes_home).load_token() is None


def test_server_names_never_leave_the_token_directory(hermes_home: Path) -> None:
    for name in ("../evil", "a/b", "..", ".hidden", ""):
        with pytest.raises(HermesError):
            TokenStore(name, hermes_home)


def test_an_unreachable_server_is_a_clear_error_not_a_traceback(hermes_home: Path) -> None:
    hermes_home.mkdir()
    url = f"http://127.0.0.1:{free_port()}/mcp"
    (hermes_home / "config.yaml").write_text(
        f"mcp_servers:\n  gone:\n    url: {url}\n    auth: oauth\n"
    )
    done = subprocess.run(
        [str(HERMES), "mcp", "login", "gone"],
        env=clean_env(hermes_home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert "login to MCP server gone failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_s_absurd_token_lifetime_is_bounded(hermes_home: Path) -> None:
    from mcp.shared.auth import OAuthToken

    store = TokenStore("odd", hermes_home)
    stored = store.save_token(
        "https://as.example", OAuthToken(access_token="x" * 20, expires_in=10**40)
    )
    assert stored.expires_at is not None and stored.expires_at < time.time() + 11 * 365 * 86400
    stored = store.save_token(
        "https://as.example", OAuthToken(access_token="y" * 20, expires_in=-5)
    )
    assert stored.expires_at == pytest.approx(stored.obtained_at)
    assert store.load_token() is not None


@pytest.mark.peer("oauth-server")
def test_a_pre_registered_client_from_config_is_used_first(
    peer_factory: Any, hermes_home: Path
) -> None:
    peer = peer_factory()
    peer.clients.add("hermes-pre-registered")
    port = free_port()
    hermes_home.mkdir()
    (hermes_home / ".env").write_text("PRE_SECRET=s3cret-from-dotenv-value\n")
    (hermes_home / "config.yaml").write_text(
        "mcp_servers:\n"
        "  pre:\n"
        f"    url: {peer.url}\n"
        "    auth: oauth\n"
        "    oauth:\n"
        "      client_id: hermes-pre-registered\n"
        "      client_secret: ${PRE_SECRET}\n"
        f"      callback_port: {port}\n"
    )
    result = login("pre", peer.url, hermes_home)  # Settings from config.yaml.
    assert result.how == "authorized"
    assert not any(r["path"] == "/register" for r in peer.requests)
    authorize = next(r for r in peer.requests if r["path"] == "/authorize")
    assert authorize["params"]["client_id"] == "hermes-pre-registered"
    assert authorize["params"]["redirect_uri"] == f"http://127.0.0.1:{port}/callback"
    exchange = next(r for r in peer.requests if r["path"] == "/token")
    assert exchange["params"]["client_secret"] == "s3cret-from-dotenv-value"
    # Nothing to remember about a client that comes from config.
    assert not (hermes_home / "mcp-tokens" / "pre.client.json").exists()


def test_the_oauth_block_is_checked_with_the_server() -> None:
    from hermes_agent.mcp.config import parse_server

    server, problems = parse_server(
        "x",
        {
            "url": "https://mcp.example/mcp",
            "auth": "oauth",
            "oauth": {"client_secret": "s", "callback_port": 70000, "colour": "blue"},
        },
    )
    assert server is None
    keys = {key for key, _ in problems}
    assert {"mcp_servers.x.oauth.callback_port", "mcp_servers.x.oauth.colour"} <= keys
    server, problems = parse_server(
        "x", {"url": "https://mcp.example/mcp", "oauth": {"client_id": "c"}}
    )
    assert server is None and ("mcp_servers.x.oauth", "OAuth settings need auth: oauth") in problems
    server, problems = parse_server(
        "x",
        {
            "url": "https://mcp.example/mcp",
            "auth": "oauth",
            "oauth": {"grant": "client_credentials"},
        },
    )
    assert server is None and any("needs client_id" in p for _, p in problems)


@pytest.mark.peer("oauth-server")
def test_login_works_when_only_the_tools_need_a_token(peer_factory: Any, hermes_home: Path) -> None:
    peer = peer_factory(open_handshake=True)
    result = login("open", peer.url, hermes_home)
    assert result.how == "authorized"
    assert oauth.status("open", hermes_home).logged_in
    assert [r["path"] for r in peer.requests].count("/authorize") == 1
