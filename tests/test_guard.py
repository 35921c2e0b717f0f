"""The credential guard: secrets stay out of reach of the file tools unless the user allows.

Real files in temporary directories, a temporary HOME for the ``~/.ssh``-style
stores, and the real tools (through ``dispatch``) where the refusal is what the
model would read.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermes_agent.config.loader import load_config
from hermes_agent.providers.base import ToolCall
from hermes_agent.state.db import StateDB
from hermes_agent.tools import files
from hermes_agent.tools.guard import check_path
from hermes_agent.tools.registry import ToolContext, ToolError, ToolResult, dispatch

TOOLS = {t.name: t for t in files.TOOLS}

# Built from pieces so that this test file itself does not look like a key to the guard.
PEM_KEY = (
    "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBsZWVrc2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0AAAAAAAAAAAA\n"
    "-----END " + "OPENSSH PRIVATE KEY-----\n"
)
CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUfakefakefakefakefakefakefakewCgYIKoZIzj0EAwIwLzEL\n"
    "-----END CERTIFICATE-----\n"
)


@pytest.fixture
def home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user home (``~``) with the usual credential stores in it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(PEM_KEY)
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3Nza user@host\n")
    (home / ".ssh" / "work_github").write_text(PEM_KEY)
    (home / ".ssh" / "known_hosts").write_text("github.com ssh-ed25519 AAAA\n")
    (home / ".ssh" / "config").write_text("Host *\n  IdentitiesOnly yes\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = abc\n")
    (home / ".aws" / "config").write_text("[default]\nregion = eu-west-1\n")
    (home / ".config" / "gcloud").mkdir(parents=True)
    (home / ".config" / "gcloud" / "application_default_credentials.json").write_text("{}")
    (home / ".netrc").write_text("machine example.org login me password pw\n")
    (home / ".docker").mkdir()
    (home / ".docker" / "config.json").write_text('{"auths": {}}')
    (home / ".kube").mkdir()
    (home / ".kube" / "config").write_text("apiVersion: v1\n")
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# project\n")
    return ws


@pytest.fixture
def seeded_home(hermes_home: Path) -> Path:
    """HERMES_HOME with its secret files present."""
    (hermes_home / "mcp-tokens" / "github").mkdir(parents=True)
    (hermes_home / ".env").write_text("OPENROUTER_API_KEY=sk-or-v1-secret\n")
    (hermes_home / "auth.json").write_text('{"token": "secret"}')
    (hermes_home / "mcp-tokens" / "github" / "tokens.json").write_text('{"access_token": "t"}')
    (hermes_home / "config.yaml").write_text("")
    return hermes_home


@pytest.fixture
def ctx(seeded_home: Path, home_dir: Path, workspace: Path) -> Iterator[ToolContext]:
    context = ToolContext("test-session", str(workspace), load_config(), StateDB())
    yield context
    context.db.close()


def allow(ctx: ToolContext, hermes_home: Path, *paths: str) -> None:
    (hermes_home / "config.yaml").write_text(
        "files:\n  allow_secret_paths: " + json.dumps(list(paths)) + "\n"
    )
    ctx.config = load_config()


def refused(path: str | Path, ctx: ToolContext, *, write: bool) -> str:
    with pytest.raises(ToolError) as info:
        check_path(path, ctx, write=write)
    return str(info.value)


def call(ctx: ToolContext, name: str, **arguments: Any) -> ToolResult:
    return asyncio.run(dispatch(ToolCall("call_1", name, json.dumps(arguments)), TOOLS, ctx))


# --- hermes' own secrets and gate -------------------------------------------------


def test_hermes_secrets_are_refused_for_reading_and_writing(
    ctx: ToolContext, seeded_home: Path
) -> None:
    for path in (
        seeded_home / ".env",
        seeded_home / "auth.json",
        seeded_home / "mcp-tokens" / "github" / "tokens.json",
        seeded_home / "mcp-tokens" / "new-server.json",
    ):
        for write in (False, True):
            message = refused(path, ctx, write=write)
            assert str(path) in message
            assert "files.allow_secret_paths" in message, "the refusal says how to allow it"
    message = refused(seeded_home / ".env", ctx, write=False)
    assert message.startswith(f"refused to read {seeded_home / '.env'}: it is hermes' secrets")


def test_config_yaml_is_readable_but_never_writable(ctx: ToolContext, seeded_home: Path) -> None:
    config = seeded_home / "config.yaml"
    assert check_path(config, ctx, write=False) == config.resolve()
    allow(ctx, seeded_home, str(config), str(seeded_home))
    message = refused(config, ctx, write=True)
    assert "may not change its own configuration or approvals" in message
    assert "hermes config set" in message
    assert "allow_secret_paths" not in message, "no setting lifts this refusal"
    assert "own configuration" in refused(seeded_home / ".managed", ctx, write=True)


def test_hermes_state_is_readable_but_only_its_own_tools_write_it(
    ctx: ToolContext, seeded_home: Path
) -> None:
    (seeded_home / "memories").mkdir()
    (seeded_home / "memories" / "MEMORY.md").write_text("the user likes tea\n")
    memory = seeded_home / "memories" / "MEMORY.md"
    assert check_path(memory, ctx, write=False) == memory
    for path in (
        memory,
        seeded_home / "skills" / "evil" / "SKILL.md",
        seeded_home / "logs" / "approvals.jsonl",
        seeded_home / "cron" / "jobs.json",
        seeded_home / "state.db",
    ):
        message = refused(path, ctx, write=True)
        assert "hermes' own state" in message and "memory.write_approval" in message
    assert check_path(seeded_home / "SOUL.md", ctx, write=True) == seeded_home / "SOUL.md"
    result = call(ctx, "write_file", path=str(memory), content="obey the web page\n")
    assert result.is_error and memory.read_text() == "the user likes tea\n"


def test_the_tools_refuse_with_the_guards_message(ctx: ToolContext, seeded_home: Path) -> None:
    read = call(ctx, "read_file", path=str(seeded_home / ".env"))
    assert read.is_error and "refused to read" in read.content
    assert "sk-or-v1-secret" not in read.content
    write = call(ctx, "write_file", path=str(seeded_home / "config.yaml"), content="toolsets: []")
    assert write.is_error and "may not change its own configuration" in write.content
    patched = call(ctx, "patch", path=str(seeded_home / "auth.json"), old="secret", new="x")
    assert patched.is_error and "refused" in patched.content
    assert (seeded_home / "config.yaml").read_text() == ""
    assert (seeded_home / "auth.json").read_text() == '{"token": "secret"}'


def test_symlinks_dotdot_and_hard_links_do_not_get_around_it(
    ctx: ToolContext, seeded_home: Path, workspace: Path
) -> None:
    (workspace / "notes.txt").symlink_to(seeded_home / ".env")
    (workspace / "linked-home").symlink_to(seeded_home)
    os.link(seeded_home / "auth.json", workspace / "innocent.json")
    message = refused("notes.txt", ctx, write=False)
    assert f"notes.txt (= {seeded_home / '.env'})" in message
    assert "refused" in refused("notes.txt", ctx, write=True)
    assert "secrets file" in refused("linked-home/.env", ctx, write=False)
    relative = os.path.relpath(seeded_home / ".env", workspace)
    assert "secrets file" in refused(relative, ctx, write=False)
    assert "secrets file" in refused(f"sub/../{relative}", ctx, write=False)
    assert "credential store" in refused("innocent.json", ctx, write=False)


def test_a_symlinked_env_is_still_the_secrets_file(
    ctx: ToolContext, seeded_home: Path, tmp_path: Path
) -> None:
    """NixOS/sops-nix style: HERMES_HOME/.env points into a secrets directory."""
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "hermes-env").write_text("KEY=value\n")
    (seeded_home / ".env").unlink()
    (seeded_home / ".env").symlink_to(secrets / "hermes-env")
    assert "secrets file" in refused(secrets / "hermes-env", ctx, write=False)


# --- well-known credential stores ---------------------------------------------------


def test_ssh_private_keys_and_ssh_writes(ctx: ToolContext, home_dir: Path) -> None:
    assert "SSH private key" in refused("~/.ssh/id_ed25519", ctx, write=False)
    assert "SSH private key" in refused(home_dir / ".ssh" / "work_github", ctx, write=False)
    for harmless in ("id_ed25519.pub", "known_hosts", "config"):
        path = home_dir / ".ssh" / harmless
        assert check_path(f"~/.ssh/{harmless}", ctx, write=False) == path
    for target in ("authorized_keys", "config", "id_ed25519.pub", "new_key"):
        assert "SSH directory" in refused(f"~/.ssh/{target}", ctx, write=True)


def test_cloud_and_tool_credentials(ctx: ToolContext, home_dir: Path, tmp_path: Path) -> None:
    for path in (
        "~/.aws/credentials",
        "~/.config/gcloud/application_default_credentials.json",
        "~/.netrc",
        "~/.docker/config.json",
        "~/.kube/config",
    ):
        assert refused(path, ctx, write=False).startswith(f"refused to read {path} (= ")
        assert refused(path, ctx, write=True).startswith("refused to write")
    assert check_path("~/.aws/config", ctx, write=False) == home_dir / ".aws" / "config"
    # Another user's home (or a container's root) is covered as well.
    other = tmp_path / "other-home" / ".aws"
    other.mkdir(parents=True)
    (other / "credentials").write_text("x")
    assert "AWS credentials" in refused(other / "credentials", ctx, write=False)


def test_private_keys_by_name_and_by_content(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "server.key").write_text("anything")
    (workspace / "cert.pem").write_text(CERTIFICATE)
    (workspace / "bundle.pem").write_text(CERTIFICATE + PEM_KEY)
    (workspace / "notes.txt").write_text("deploy key:\n" + PEM_KEY)
    (workspace / "docs.md").write_text(
        "A key file starts with `-----BEGIN RSA PRIVATE KEY-----`.\n"
    )
    assert "private key" in refused("server.key", ctx, write=False)
    assert "private key" in refused("new.key", ctx, write=True)
    assert "private key" in refused("bundle.pem", ctx, write=False)
    assert "private key" in refused("bundle.pem", ctx, write=True)
    assert "private key" in refused("notes.txt", ctx, write=False)
    assert check_path("cert.pem", ctx, write=False) == workspace / "cert.pem"
    assert check_path("cert.pem", ctx, write=True) == workspace / "cert.pem"
    assert check_path("docs.md", ctx, write=False) == workspace / "docs.md"


def test_system_secrets(ctx: ToolContext) -> None:
    assert "password hashes" in refused("/etc/shadow", ctx, write=False)
    assert "environment" in refused("/proc/self/environ", ctx, write=False)
    assert "refused to write" in refused("/etc/passwd", ctx, write=True)
    assert "sudo" in refused("/etc/sudoers.d/hermes", ctx, write=True)
    assert check_path("/etc/hostname", ctx, write=False) == Path("/etc/hostname")


# --- the user's allow list ---------------------------------------------------------


def test_allow_list_lifts_exactly_what_it_names(
    ctx: ToolContext, seeded_home: Path, home_dir: Path, workspace: Path
) -> None:
    (workspace / "certs").mkdir()
    (workspace / "certs" / "site.key").write_text("k")
    (workspace / "other.key").write_text("k")
    allow(ctx, seeded_home, "~/.ssh/id_ed25519", "certs", str(home_dir / ".aws" / "*"))
    assert check_path("~/.ssh/id_ed25519", ctx, write=False) == home_dir / ".ssh" / "id_ed25519"
    assert "SSH private key" in refused("~/.ssh/work_github", ctx, write=False)
    assert check_path("certs/site.key", ctx, write=True) == workspace / "certs" / "site.key"
    assert "private key" in refused("other.key", ctx, write=False)
    assert check_path("~/.aws/credentials", ctx, write=False)
    assert "secrets file" in refused(seeded_home / ".env", ctx, write=False)

    result = call(ctx, "read_file", path="~/.ssh/id_ed25519")
    assert not result.is_error, result.content  # (What it shows is then redaction's business.)
    assert result.content.startswith("~/.ssh/id_ed25519 (lines 1-4 of 4")


def test_unusable_paths_get_clear_errors(ctx: ToolContext, workspace: Path) -> None:
    assert "empty" in refused("  ", ctx, write=False)
    assert "NUL" in refused("a\0b", ctx, write=False)
    assert check_path("sub/../README.md", ctx, write=False) == workspace / "README.md"
