"""`hermes doctor`: each thing that can be wrong is found, named, and given a fix.

Every test runs the real `hermes doctor` against a HERMES_HOME built for the
case: a broken config.yaml, a `.env` others can read, a missing key, a
provider on a closed port and one that answers (aimock and the scripted LLM
on 127.0.0.1), a state.db with damaged pages, a full file system (a small
tmpfs, when this machine lets a test mount one).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import hermes_agent
from conftest import Runner
from hermes_agent import diagnose
from peers.aimock import Aimock
from peers.daemons import free_port
from peers.llm_server import ScriptedLLM

SECRET = "sk-or-v1-doctorPlantedValue0123456789abcdef"


def write_home(home: Path, config: dict[str, Any], env: str | None = None) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    if env is not None:
        (home / ".env").write_text(env)
        (home / ".env").chmod(0o600)


def doctor(hermes: Runner, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `hermes doctor --json ARGS`; the report, with the exit status under "exit"."""
    result = hermes("doctor", "--json", *args, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    report["exit"] = result.returncode
    report["by_name"] = {c["name"]: c for c in report["checks"]}
    return report


def custom(base_url: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {"model": {"provider": "custom", "base_url": base_url, "default": model}}


@pytest.fixture(scope="module")
def aimock() -> Iterator[Aimock]:
    fixtures = [{"match": {"userMessage": "hello"}, "response": {"content": "hi"}}]
    with Aimock(fixtures) as mock:
        yield mock


def test_a_healthy_install_passes_with_a_reachable_provider(
    hermes: Runner, hermes_home: Path, aimock: Aimock
) -> None:
    write_home(hermes_home, custom(aimock.openai_base_url))
    report = doctor(hermes)
    assert report["exit"] == 0 and report["ok"] is True, report["checks"]
    provider = report["by_name"]["provider: custom"]
    assert provider["status"] == "ok"
    assert "reachable" in provider["summary"] and "gpt-4o" in provider["summary"]
    # The answer was read: a model the server does not list is a warning (aimock's
    # journal does not record GET /v1/models, so this is how the call shows).
    write_home(hermes_home, custom(aimock.openai_base_url, "no-such-model"))
    unlisted = doctor(hermes, "--no-probe")
    check = unlisted["by_name"]["provider: custom"]
    assert check["status"] == "warn" and "does not list the model" in check["summary"]
    assert "gpt-4o" in check["details"] and unlisted["exit"] == 0
    write_home(hermes_home, custom(aimock.openai_base_url))
    sandbox = report["by_name"]["sandbox"]
    assert sandbox["status"] in ("ok", "warn")  # warn: no kernel confinement on this machine
    for name in ("config", ".env", "keys", "state.db", "disk", "managed mode", "tools"):
        assert report["by_name"][name]["status"] == "ok", report["by_name"][name]
    # The plain screen says the same, one line per check, and exits 0.
    plain = hermes("doctor")
    assert plain.returncode == 0
    assert "nothing failed" in plain.stdout.splitlines()[-1]


def test_anthropic_wire_models_list_with_the_key_by_name_only(
    hermes: Runner, hermes_home: Path, aimock: Aimock
) -> None:
    config = {
        "model": {
            "provider": "anthropic",
            "base_url": aimock.anthropic_base_url,
            "default": "claude-3-5-sonnet-20241022",
        }
    }
    write_home(hermes_home, config, env=f"ANTHROPIC_API_KEY={SECRET}\n")
    result = hermes("doctor", "--json", "--no-probe")
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["provider: anthropic"]["status"] == "ok", checks
    assert checks["keys"]["status"] == "ok"
    assert "ANTHROPIC_API_KEY" in checks["keys"]["summary"]
    assert "(from .env)" in checks["keys"]["summary"]
    assert SECRET not in result.stdout + result.stderr  # Names, never values.
    # What was sent, seen by a server that records GET requests.
    with ScriptedLLM([]) as llm:
        config["model"]["base_url"] = llm.anthropic_base_url
        write_home(hermes_home, config)
        hermes("doctor", "--json", "--no-probe")
        request = llm.requests[-1]
    assert request.method == "GET" and request.path == "/v1/models"
    assert request.headers.get("anthropic-version") == "2023-06-01"
    assert request.headers.get("x-api-key") == SECRET
    assert "authorization" not in request.headers


def test_unreachable_provider_fails_and_offline_skips_it(hermes: Runner, hermes_home: Path) -> None:
    port = free_port()  # Bound, then released: nothing listens there.
    write_home(hermes_home, custom(f"http://127.0.0.1:{port}/v1"))
    report = doctor(hermes, "--no-probe")
    assert report["exit"] == 1 and report["ok"] is False
    provider = report["by_name"]["provider: custom"]
    assert provider["status"] == "fail"
    assert f"127.0.0.1:{port}" in provider["summary"] and "refused" in provider["summary"]
    assert "--offline" in provider["fix"]
    offline = doctor(hermes, "--offline", "--no-probe")
    assert offline["exit"] == 0, offline["checks"]
    assert "provider: custom" not in offline["by_name"]
    assert offline["by_name"]["network"]["status"] == "skip"


def test_a_provider_that_never_answers_is_cut_at_the_timeout(
    hermes: Runner, hermes_home: Path
) -> None:
    # The kernel completes the handshake (backlog), nobody ever reads or answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        write_home(hermes_home, custom(f"http://127.0.0.1:{port}/v1"))
        began = time.monotonic()
        report = doctor(hermes, "--timeout", "0.5", "--no-probe")
        took = time.monotonic() - began
    assert report["by_name"]["provider: custom"]["status"] == "fail"
    assert "no answer within 0.5 s" in report["by_name"]["provider: custom"]["summary"]
    assert report["exit"] == 1
    assert took < 60  # Cut, not waiting forever (the bound leaves room for a loaded machine).


def test_reachable_without_a_models_list_is_a_warning_not_a_failure(
    hermes: Runner, hermes_home: Path
) -> None:
    with ScriptedLLM([]) as llm:  # Answers 404 to GET /models.
        write_home(hermes_home, custom(llm.openai_base_url, "test-model"), "CUSTOM_API_KEY=k1\n")
        report = doctor(hermes, "--no-probe")
        request = llm.requests[-1]
    assert request.method == "GET" and request.path.endswith("/v1/models")
    assert request.headers.get("authorization") == "Bearer k1"
    provider = report["by_name"]["provider: custom"]
    assert provider["status"] == "warn" and "404" in provider["summary"]
    assert report["exit"] == 0  # A warning alone exits 0.


def test_a_rejected_key_and_an_unreachable_fallback(
    hermes: Runner, hermes_home: Path, aimock: Aimock
) -> None:
    from peers.llm_server import Error

    with ScriptedLLM() as llm:
        llm.add(Error(401))  # Not consumed: GET /models is not a scripted request.
        config = custom(aimock.openai_base_url)
        closed = free_port()
        config["fallback_providers"] = [
            {"provider": "custom", "model": "m", "base_url": f"http://127.0.0.1:{closed}/v1"}
        ]
        write_home(hermes_home, config)
        report = doctor(hermes, "--no-probe")
    fallback = report["by_name"]["fallback 1: custom"]
    assert fallback["status"] == "fail" and "refused" in fallback["summary"]
    assert "fallback 1" in fallback["fix"]
    assert report["by_name"]["provider: custom"]["status"] == "ok"


def test_broken_config_is_named_with_its_line(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir(mode=0o700)
    (hermes_home / "config.yaml").write_text("model:\n  default: [unclosed\n")
    report = doctor(hermes, "--offline", "--no-probe")
    check = report["by_name"]["config"]
    assert check["status"] == "fail" and report["exit"] == 1
    assert any("config.yaml:" in d for d in check["details"]), check
    assert "hermes config edit" in check["fix"]
    # A wrong type is found too, with its key, and the rest of the checks still run.
    (hermes_home / "config.yaml").write_text("model:\n  timeout: soon\n")
    report = doctor(hermes, "--offline", "--no-probe")
    assert report["by_name"]["config"]["status"] == "fail"
    assert any("model.timeout" in d for d in report["by_name"]["config"]["details"])
    assert {"disk", "state.db", "sandbox"} <= set(report["by_name"])
    # Managed by NixOS: the fix says where the configuration really lives.
    report = doctor(hermes, "--offline", "--no-probe", env={"HERMES_MANAGED": "nixos"})
    assert "configuration.nix" in report["by_name"]["config"]["fix"]
    assert "managed by nixos" in report["by_name"]["managed mode"]["summary"]


def test_env_readable_by_others_fails_with_chmod(hermes: Runner, hermes_home: Path) -> None:
    write_home(hermes_home, custom("http://127.0.0.1:9/v1"), env=f"OPENROUTER_API_KEY={SECRET}\n")
    (hermes_home / ".env").chmod(0o644)
    result = hermes("doctor", "--offline", "--no-probe")
    assert result.returncode == 1
    assert "FAIL  .env" in result.stdout
    assert f"chmod 600 {hermes_home / '.env'}" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    (hermes_home / ".env").chmod(0o600)
    report = doctor(hermes, "--offline", "--no-probe")
    assert report["by_name"][".env"]["status"] == "ok"


def test_missing_key_names_the_variable(hermes: Runner, hermes_home: Path) -> None:
    write_home(hermes_home, {"model": {"provider": "openrouter"}}, env="OPENAI_API_KEY=x-1\n")
    report = doctor(hermes, "--no-probe")  # Network on: the keyless provider is not called.
    keys = report["by_name"]["keys"]
    assert keys["status"] == "fail" and report["exit"] == 1
    assert "OPENROUTER_API_KEY is not set" in keys["summary"]
    assert "hermes config set OPENROUTER_API_KEY" in keys["fix"]
    assert keys["details"] == ["OPENAI_API_KEY (from .env)"]  # What is present, by name.
    assert report["by_name"]["provider"]["status"] == "skip"


def test_damaged_state_db(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    from hermes_agent.state.db import StateDB

    write_home(hermes_home, custom("http://127.0.0.1:9/v1"))
    with StateDB() as db:
        for n in range(40):
            session = db.create_session(source="cli", model="m", cwd="/")
            for i in range(10):
                db.add_message(session, {"role": "user", "content": f"message {n}-{i} " * 40})
    healthy = doctor(hermes, "--offline", "--no-probe")
    assert healthy["by_name"]["state.db"]["status"] == "ok"
    assert "40 sessions" in healthy["by_name"]["state.db"]["summary"]
    # A copy with garbage written over pages in its middle, put in place of the original.
    original = hermes_home / "state.db"
    with sqlite3.connect(original) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    damaged = tmp_path / "damaged.db"
    shutil.copy(original, damaged)
    size = damaged.stat().st_size
    with damaged.open("r+b") as handle:
        for offset in range(page * 2, size - page, page * 3):
            handle.seek(offset + 8)
            handle.write(os.urandom(page - 16))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{original}{suffix}").unlink()
    shutil.copy(damaged, original)
    report = doctor(hermes, "--offline", "--no-probe")
    check = report["by_name"]["state.db"]
    assert check["status"] == "fail" and report["exit"] == 1, check
    assert ".recover" in check["fix"]
    # A file that is not a database at all.
    original.write_bytes(b"this is not sqlite" * 100)
    report = doctor(hermes, "--offline", "--no-probe")
    assert report["by_name"]["state.db"]["status"] == "fail"


def test_enabled_platform_without_its_token(hermes: Runner, hermes_home: Path) -> None:
    config = custom("http://127.0.0.1:9/v1")
    config["gateway"] = {
        "platforms": {
            "irc": {"enabled": True},
            "slack": {"enabled": True},
            "api_server": {"enabled": True},
        }
    }
    write_home(hermes_home, config, env="SLACK_BOT_TOKEN=xoxb-1\nAPI_SERVER_KEY=k\n")
    report = doctor(hermes, "--offline", "--no-probe")
    check = report["by_name"]["gateway platforms"]
    assert check["status"] == "fail"
    assert any(d.startswith("slack: SLACK_APP_TOKEN not set") for d in check["details"]), check
    assert "api_server" in check["summary"] and "irc" in check["summary"]


def test_the_platform_table_agrees_with_the_adapters() -> None:
    # The doctor does not import the adapters (their libraries cost start-up time), so
    # the secrets they read are compared here, from their source.
    folder = Path(hermes_agent.__file__).parent / "gateway" / "platforms"
    optional = {"IRC_PASSWORD", "MATRIX_PASSWORD", "MATRIX_ACCESS_TOKEN"}
    for name, groups in diagnose.PLATFORM_SECRETS.items():
        tree = ast.parse((folder / f"{name}.py").read_text())
        constants = {
            node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and any(isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in node.targets)
        }
        named = {n for group in groups for n in group}
        assert named <= constants, (name, named, constants)
        assert constants - named <= optional, (name, constants - named)


def test_missing_mcp_command(hermes: Runner, hermes_home: Path) -> None:
    config = custom("http://127.0.0.1:9/v1")
    config["mcp_servers"] = {"ghost": {"command": "no-such-mcp-server-here"}}
    write_home(hermes_home, config)
    report = doctor(hermes, "--offline", "--no-probe")
    assert report["exit"] == 1
    commands = report["by_name"]["mcp commands"]
    assert commands["status"] == "fail"
    assert "no-such-mcp-server-here" in commands["details"][0]


def _can_mount_tmpfs(where: Path) -> str | None:
    """None when a small tmpfs can be mounted at ``where`` here, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount(8) is not installed"
    where.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=80m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"the kernel refused a tmpfs mount: {probe.stderr.strip()}"
    return None


def test_full_disk_on_a_small_tmpfs(hermes: Runner, tmp_path: Path) -> None:
    mount = tmp_path / "small-fs"
    why = _can_mount_tmpfs(mount)
    if why is not None:
        pytest.skip(why)
    try:
        home = mount / "hermes"
        write_home(home, custom("http://127.0.0.1:9/v1"))
        env = {"HERMES_HOME": str(home)}
        healthy = doctor(hermes, "--offline", "--no-probe", env=env)
        # 80 MB: above the failure threshold, below the warning one.
        assert healthy["by_name"]["disk"]["status"] == "warn", healthy["by_name"]["disk"]
        assert healthy["exit"] == 0
        with contextlib.suppress(OSError), (home / "filler").open("wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        report = doctor(hermes, "--offline", "--no-probe", env=env)
        disk = report["by_name"]["disk"]
        assert disk["status"] == "fail" and report["exit"] == 1
        assert "0 B free" in disk["summary"] and str(home) in disk["summary"]
        assert "free some space" in disk["fix"]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_thresholds_of_the_disk_check(monkeypatch: pytest.MonkeyPatch, hermes_home: Path) -> None:
    # The real file system, judged with thresholds moved around it.
    hermes_home.mkdir(mode=0o700)
    free = os.statvfs(hermes_home).f_bavail * os.statvfs(hermes_home).f_frsize
    assert diagnose.check_disk().status in ("ok", "warn", "fail")
    monkeypatch.setattr(diagnose, "DISK_WARN_BYTES", free * 2)
    assert diagnose.check_disk().status == "warn"
    monkeypatch.setattr(diagnose, "DISK_FAIL_BYTES", free * 2)
    assert diagnose.check_disk().status == "fail"


def test_doctor_creates_and_changes_nothing(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("doctor", "--offline")  # The sandbox probe included.
    assert result.returncode == 1  # No key for the default provider.
    assert not hermes_home.exists()
    assert "does not exist yet" in result.stdout


def test_bad_arguments(hermes: Runner) -> None:
    result = hermes("doctor", "--timeout", "soon")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = hermes("doctor", "--timeout", "0")
    assert result.returncode == 2


def test_the_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, hermes_agent.diagnose\n"
        "print(sorted(m for m in ('openai', 'anthropic', 'httpx', 'mcp', 'aiohttp') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


EVERYTHING = Path(__file__).parent / "peers" / "node_modules" / ".bin" / "mcp-server-everything"


def _processes_running(path: Path) -> int:
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(path).encode() in cmdline.read_bytes():
                count += 1
    return count


@pytest.mark.peer("mcp-server-everything")
def test_mcp_servers_are_connected_for_a_moment_and_stopped(
    hermes: Runner, hermes_home: Path
) -> None:
    if not EVERYTHING.exists():
        pytest.skip("the MCP reference servers are not installed (tests/peers/install.sh)")
    pytest.importorskip("mcp")
    config = custom("http://127.0.0.1:9/v1")
    config["mcp_servers"] = {
        "everything": {"command": str(EVERYTHING), "args": ["stdio"]},
        "quits": {"command": "false"},
        "away": {"url": f"http://127.0.0.1:{free_port()}/mcp"},
    }
    write_home(hermes_home, config)
    before = _processes_running(EVERYTHING)
    # Network on (MCP servers are contacted); the provider on port 9 fails, as expected.
    report = doctor(hermes, "--no-probe", "--timeout", "20")  # Ends when all settled.
    checks = report["by_name"]
    assert checks["mcp: everything"]["status"] == "ok", checks["mcp: everything"]
    assert "ready, 15 tools" in checks["mcp: everything"]["summary"]
    assert checks["mcp: quits"]["status"] == "fail"
    assert "hermes logs mcp quits" in checks["mcp: quits"]["fix"]
    assert checks["mcp: away"]["status"] in ("fail", "warn")
    deadline = time.monotonic() + 30  # They end as the doctor ends; a loaded machine lags.
    while _processes_running(EVERYTHING) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_running(EVERYTHING) == before  # Stopped again with the doctor.
    offline = doctor(hermes, "--offline", "--no-probe")
    assert not any(name.startswith("mcp: ") for name in offline["by_name"])


def test_a_redirect_is_reported_and_the_key_never_follows_it(
    hermes: Runner, hermes_home: Path
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://127.0.0.1:{elsewhere.server_address[1]}/v1/models"

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    first = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{first.server_address[1]}/v1"
        write_home(hermes_home, custom(base), env=f"CUSTOM_API_KEY={SECRET}\n")
        report = doctor(hermes, "--no-probe")
    finally:
        for server in (elsewhere, first):
            server.shutdown()
    check = report["by_name"]["provider: custom"]
    assert check["status"] == "warn" and "redirect" in check["summary"], check
    assert seen == []  # Not followed: the key never reached the other server.


def test_a_base_url_that_is_not_http_is_never_opened(hermes: Runner, hermes_home: Path) -> None:
    write_home(hermes_home, custom("file:///etc"))
    result = hermes("doctor", "--no-probe")
    assert result.returncode == 1
    assert "not an http(s) URL" in result.stdout
    assert "root:" not in result.stdout
