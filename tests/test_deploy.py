"""`hermes deploy`: the NixOS deployment steps, applied to real files.

Covers the flake's seven config-roundtrip scenarios (fresh install, Nix
override, user key preservation, mixed merge, MCP additive merge, nested
deep merge, idempotency), the removal of keys Nix stopped setting, configFile
mode, .env assembly, documents, auth.json, .managed, the container-identity
table, spec validation and the CLI.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Runner
from helpers import assert_clean_failure
from hermes_agent.config.envfile import read_env_file
from hermes_agent.config.loader import load_config
from hermes_agent.config.managed import manager
from hermes_agent.deploy import (
    SpecError,
    apply_spec,
    container_identity,
    identity,
)
from hermes_agent.errors import EXIT_USAGE, ConfigError, HermesError

SECRET = "sk-or-v1-0123456789abcdef-very-secret"


# --- helpers --------------------------------------------------------------------------


def make_spec(tmp_path: Path, **keys: Any) -> dict[str, Any]:
    """A version-1 spec with stateDir under ``tmp_path`` plus ``keys``."""
    return {"version": 1, "stateDir": str(tmp_path / "state"), **keys}


def write_yaml(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(*roots: Path) -> dict[str, tuple[str, int, int, bytes | None]]:
    """Every file and directory under ``roots``: kind, mode, mtime, content."""
    seen: dict[str, tuple[str, int, int, bytes | None]] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in [root, *sorted(root.rglob("*"))]:
            if path.name == "home.lock":
                continue  # The home's lock records its last holder's pid: not data.
            info = path.lstat()
            content = path.read_bytes() if path.is_file() else None
            kind = "dir" if path.is_dir() else "file"
            # A directory's mtime moves when the lock file is created in it; what the
            # directory holds is compared entry by entry anyway.
            mtime = 0 if kind == "dir" else info.st_mtime_ns
            seen[str(path)] = (kind, stat.S_IMODE(info.st_mode), mtime, content)
    return seen


@pytest.fixture
def config(hermes_home: Path) -> Path:
    return hermes_home / "config.yaml"


# --- the seven merge scenarios ----------------------------------------------------------


def test_fresh_install(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    settings = {"model": {"default": "anthropic/claude-sonnet-4"}, "toolsets": ["todo"]}
    report = apply_spec(make_spec(tmp_path, settings=settings), home=hermes_home)
    assert read_yaml(config) == settings
    assert mode(config) == 0o600
    for name in ("sessions", "memories", "skills", "cron", "logs", "mcp-tokens"):
        assert (hermes_home / name).is_dir()
    assert (tmp_path / "state" / "workspace").is_dir(), "workingDirectory defaults under stateDir"
    assert any(c.path == config and c.action == "created" for c in report.changes)
    effective = load_config(config)
    assert effective.get("model.default") == "anthropic/claude-sonnet-4"
    assert effective.get("max_turns") == 90, "defaults still come from DEFAULT_CONFIG"
    assert effective.warnings == []


def test_nix_overrides_the_users_value(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    write_yaml(config, {"model": {"default": "user/model"}, "max_turns": 10})
    apply_spec(
        make_spec(tmp_path, settings={"model": {"default": "nix/model"}, "max_turns": 50}),
        home=hermes_home,
    )
    assert read_yaml(config) == {"model": {"default": "nix/model"}, "max_turns": 50}


def test_user_keys_are_preserved(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    user = {"display": {"compact": True}, "memory": {"memory_char_limit": 3000}}
    write_yaml(config, user)
    apply_spec(make_spec(tmp_path, settings={"max_turns": 40}), home=hermes_home)
    assert read_yaml(config) == {**user, "max_turns": 40}
    # Keys the user (or the agent) adds between applies survive the next one too.
    data = read_yaml(config)
    data["agent"] = {"verbose": True}
    write_yaml(config, data)
    apply_spec(make_spec(tmp_path, settings={"max_turns": 40}), home=hermes_home)
    assert read_yaml(config)["agent"] == {"verbose": True}


def test_mixed_merge_in_one_section(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    write_yaml(
        config,
        {
            "model": {"default": "user/model", "base_url": "http://127.0.0.1:1/v1"},
            "terminal": {"timeout": 60},
        },
    )
    settings = {"model": {"default": "nix/model", "max_tokens": 4096}, "toolsets": ["all"]}
    apply_spec(make_spec(tmp_path, settings=settings), home=hermes_home)
    assert read_yaml(config) == {
        "model": {
            "default": "nix/model",
            "base_url": "http://127.0.0.1:1/v1",
            "max_tokens": 4096,
        },
        "terminal": {"timeout": 60},
        "toolsets": ["all"],
    }


def test_mcp_servers_merge_additively(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    write_yaml(
        config,
        {
            "mcp_servers": {
                "mine": {"command": "my-server"},
                "fs": {"command": "old", "env": {"USER_ONLY": "1"}},
            }
        },
    )
    spec = make_spec(
        tmp_path,
        settings={"mcp_servers": {"web": {"url": "http://127.0.0.1:9/mcp"}}},
        mcpServers={
            "fs": {"command": "npx", "args": ["-y", "server-filesystem"], "url": None},
            "docs-example": {"url": "http://127.0.0.1:8/mcp", "auth": None, "enabled": True},
        },
    )
    report = apply_spec(spec, home=hermes_home)
    servers = read_yaml(config)["mcp_servers"]
    assert servers == {
        "mine": {"command": "my-server"},
        # A server Nix declares is Nix's entry as a whole; nulls mean "not set".
        "fs": {"command": "npx", "args": ["-y", "server-filesystem"]},
        "web": {"url": "http://127.0.0.1:9/mcp"},
        "docs-example": {"url": "http://127.0.0.1:8/mcp", "enabled": True},
    }
    assert not [w for w in report.warnings if "mcp_servers" in w]
    # Nix drops two servers: they go; the user's own server stays.
    spec["mcpServers"] = {"fs": spec["mcpServers"]["fs"]}
    del spec["settings"]
    apply_spec(spec, home=hermes_home)
    assert read_yaml(config)["mcp_servers"] == {
        "mine": {"command": "my-server"},
        "fs": {"command": "npx", "args": ["-y", "server-filesystem"]},
    }
    # No Nix server left and none of the user's: the section disappears with the last one.
    write_yaml(config, {"mcp_servers": {"fs": {"command": "npx"}}})
    apply_spec(make_spec(tmp_path), home=hermes_home)
    assert read_yaml(config) is None


def test_nested_deep_merge(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    write_yaml(
        config,
        {
            "gateway": {
                "platforms": {
                    "telegram": {"token_env": "TG_TOKEN", "allowed_users": [1]},
                    "discord": {"enabled": False},
                }
            }
        },
    )
    settings = {
        "gateway": {
            "platforms": {"telegram": {"allowed_users": [2, 3], "enabled": True, "stickers": "off"}}
        }
    }
    report = apply_spec(make_spec(tmp_path, settings=settings), home=hermes_home)
    assert read_yaml(config) == {
        "gateway": {
            "platforms": {
                "telegram": {
                    "token_env": "TG_TOKEN",
                    "allowed_users": [2, 3],
                    "enabled": True,
                    "stickers": "off",
                },
                "discord": {"enabled": False},
            }
        }
    }
    # A key this hermes does not know yet is written, with a warning naming it.
    assert any(
        "settings.gateway.platforms.telegram.stickers" in w and "unknown" in w
        for w in report.warnings
    )


def full_spec(tmp_path: Path) -> dict[str, Any]:
    """A spec that uses every step, with its input files created."""
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    (inputs / "secrets.env").write_text(f"OPENROUTER_API_KEY={SECRET}\n")
    (inputs / "auth.json").write_text('{"providers": {}}\n')
    (inputs / "USER.md").write_text("The user likes short answers.\n")
    return make_spec(
        tmp_path,
        workingDirectory=str(tmp_path / "state" / "workspace"),
        settings={"model": {"default": "nix/model"}, "display": {"compact": True}},
        environment={"LOG_LEVEL": "info"},
        environmentFiles=[str(inputs / "secrets.env")],
        authFile=str(inputs / "auth.json"),
        documents={"SOUL.md": "Be terse.\n", "USER.md": {"source": str(inputs / "USER.md")}},
        mcpServers={"fs": {"command": "npx", "args": ["-y", "server-filesystem"]}},
        container={"enable": True, "image": "ubuntu:24.04", "entrypoint": "#!/bin/sh\nexec x\n"},
    )


def test_idempotent_second_apply_changes_no_byte_and_no_mtime(
    tmp_path: Path, hermes_home: Path, config: Path
) -> None:
    spec = full_spec(tmp_path)
    write_yaml(config, {"agent": {"verbose": True}})
    first = apply_spec(spec, home=hermes_home)
    assert first.changed
    before = snapshot(tmp_path / "state", hermes_home)
    second = apply_spec(spec, home=hermes_home)
    assert second.changes == []
    assert second.recreate_container is False
    assert snapshot(tmp_path / "state", hermes_home) == before
    # A config.yaml the user formatted by hand (comments) is not rewritten when nothing changes.
    config.write_text("# mine\n" + config.read_text())
    hand = snapshot(hermes_home)
    assert apply_spec(spec, home=hermes_home).changes == []
    assert snapshot(hermes_home) == hand


# --- keys Nix stopped setting -----------------------------------------------------------


def test_keys_nix_stopped_setting_are_removed(
    tmp_path: Path, hermes_home: Path, config: Path
) -> None:
    settings = {
        "model": {"default": "nix/model", "max_tokens": 4096},
        "display": {"compact": True},
        "toolsets": ["todo"],
        "terminal": {"timeout": 30},
    }
    apply_spec(make_spec(tmp_path, settings=settings), home=hermes_home)
    data = read_yaml(config)
    data["model"]["base_url"] = "http://127.0.0.1:1/v1"  # the user's own key
    data["terminal"] = {"timeout": {"user": "mapping"}}  # someone nested keys under a Nix leaf
    write_yaml(config, data)
    report = apply_spec(
        make_spec(tmp_path, settings={"model": {"default": "nix/model"}}), home=hermes_home
    )
    assert read_yaml(config) == {
        "model": {"default": "nix/model", "base_url": "http://127.0.0.1:1/v1"},
        "terminal": {"timeout": {"user": "mapping"}},
    }
    detail = next(c.detail for c in report.changes if c.path == config)
    assert "removed" in detail and "display.compact" in detail and "toolsets" in detail
    state = json.loads((hermes_home / ".nix-managed-keys.json").read_text())
    assert state["settings"] == [["model", "default"]]
    assert mode(hermes_home / ".nix-managed-keys.json") == 0o600
    # Nothing set any more: Nix's last key goes, the user's stay.
    apply_spec(make_spec(tmp_path), home=hermes_home)
    assert read_yaml(config) == {
        "model": {"base_url": "http://127.0.0.1:1/v1"},
        "terminal": {"timeout": {"user": "mapping"}},
    }


def test_a_leaf_becoming_a_section_and_back(
    tmp_path: Path, hermes_home: Path, config: Path
) -> None:
    apply_spec(make_spec(tmp_path, settings={"x": {"y": 1}}), home=hermes_home)
    apply_spec(make_spec(tmp_path, settings={"x": {"y": {"z": 2}}}), home=hermes_home)
    assert read_yaml(config) == {"x": {"y": {"z": 2}}}
    apply_spec(make_spec(tmp_path, settings={"x": {"y": 3}}), home=hermes_home)
    assert read_yaml(config) == {"x": {"y": 3}}


def test_broken_config_yaml_is_an_error_and_nothing_is_written(
    tmp_path: Path, hermes_home: Path, config: Path
) -> None:
    hermes_home.mkdir()
    config.write_text("model:\n  default: [unclosed\n")
    spec = full_spec(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as caught:
        apply_spec(spec, home=hermes_home)
    assert re.match(rf"{re.escape(str(config))}:\d+: ", str(caught.value))
    assert "nothing was written" in str(caught.value)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in hermes_home.iterdir()) == ["config.yaml", "home.lock"]


def test_a_wrongly_typed_nix_setting_is_refused(tmp_path: Path, hermes_home: Path) -> None:
    with pytest.raises(SpecError) as caught:
        apply_spec(make_spec(tmp_path, settings={"max_turns": "many"}), home=hermes_home)
    assert caught.value.exit_code == EXIT_USAGE
    assert "settings.max_turns: expected an integer" in str(caught.value)
    assert not hermes_home.exists()


# --- configFile mode ----------------------------------------------------------------------


def test_config_file_is_copied_as_is(tmp_path: Path, hermes_home: Path, config: Path) -> None:
    source = tmp_path / "inputs" / "config.yaml"
    source.parent.mkdir()
    text = (
        "# from Nix, verbatim\nmodel:\n  default: file/model   # trailing comment\nmax_turns: 9\n"
    )
    source.write_text(text)
    write_yaml(config, {"display": {"compact": True}})
    spec = make_spec(tmp_path, configFile=str(source), settings={"max_turns": 1})
    report = apply_spec(spec, home=hermes_home)
    assert config.read_text() == text
    assert any("settings and mcpServers are ignored" in w for w in report.warnings)
    assert apply_spec(spec, home=hermes_home).changes == []
    # Back to `settings`: the copy's keys were Nix's, so the ones no longer set go.
    apply_spec(make_spec(tmp_path, settings={"max_turns": 5}), home=hermes_home)
    assert read_yaml(config) == {"max_turns": 5}


def test_broken_config_file_is_refused(tmp_path: Path, hermes_home: Path) -> None:
    source = tmp_path / "bad.yaml"
    source.write_text("model: [\n")
    with pytest.raises(ConfigError) as caught:
        apply_spec(make_spec(tmp_path, configFile=str(source)), home=hermes_home)
    assert str(source) in str(caught.value)
    missing = tmp_path / "absent.yaml"
    with pytest.raises(HermesError) as caught_missing:
        apply_spec(make_spec(tmp_path, configFile=str(missing)), home=hermes_home)
    assert str(missing) in str(caught_missing.value)
    assert not hermes_home.exists()


# --- .env -------------------------------------------------------------------------------------


def test_env_is_rebuilt_from_scratch_0600_later_file_wins(
    tmp_path: Path, hermes_home: Path
) -> None:
    first = tmp_path / "first.env"
    second = tmp_path / "second.env"
    first.write_text("A=from-first\nB=from-first\nexport QUOTED='it\\'s'\n")
    second.write_text('# comment\nB=from-second\nMULTI="line one\nline two"\n')
    hermes_home.mkdir()
    env = hermes_home / ".env"
    env.write_text("STALE=left-by-hand\nA=old\n")
    env.chmod(0o644)
    spec = make_spec(
        tmp_path,
        environment={"A": "from-attrs", "C": "from-attrs", "ODD": "$HOME #not a comment"},
        environmentFiles=[str(first), str(second)],
    )
    apply_spec(spec, home=hermes_home)
    assert mode(env) == 0o600
    assert read_env_file(env).values == {
        "A": "from-first",
        "C": "from-attrs",
        "ODD": "$HOME #not a comment",
        "B": "from-second",
        "QUOTED": "it's",
        "MULTI": "line one\nline two",
    }
    assert "STALE" not in env.read_text()
    # Loosened by hand without a content change: tightened again.
    env.chmod(0o640)
    report = apply_spec(spec, home=hermes_home)
    assert mode(env) == 0o600
    assert [(c.path, c.action) for c in report.changes] == [(env, "mode")]


def test_env_without_any_source_is_emptied(tmp_path: Path, hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / ".env").write_text(f"OPENROUTER_API_KEY={SECRET}\n")
    apply_spec(make_spec(tmp_path), home=hermes_home)
    assert read_env_file(hermes_home / ".env").values == {}
    assert SECRET not in (hermes_home / ".env").read_text()


def test_missing_environment_file_is_named_and_nothing_written(
    tmp_path: Path, hermes_home: Path
) -> None:
    spec = full_spec(tmp_path)
    missing = tmp_path / "run" / "secrets" / "hermes.env"
    spec["environmentFiles"].append(str(missing))
    with pytest.raises(HermesError) as caught:
        apply_spec(spec, home=hermes_home)
    assert f"environment file {missing} does not exist" in str(caught.value)
    assert not hermes_home.exists()
    assert not (tmp_path / "state").exists()


def test_unparsable_environment_file_never_shows_the_line(
    tmp_path: Path, hermes_home: Path
) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text(f"GOOD=1\nthis is {SECRET} not a binding\n")
    with pytest.raises(HermesError) as caught:
        apply_spec(make_spec(tmp_path, environmentFiles=[str(bad)]), home=hermes_home)
    assert f"{bad}:2: expected KEY=value" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert not hermes_home.exists()


def test_rotated_secret_is_picked_up_by_the_next_apply(tmp_path: Path, hermes_home: Path) -> None:
    spec = full_spec(tmp_path)
    secrets = Path(spec["environmentFiles"][0])
    apply_spec(spec, home=hermes_home)
    assert read_env_file(hermes_home / ".env").values["OPENROUTER_API_KEY"] == SECRET
    rotated = SECRET + "-rotated"
    secrets.write_text(f"OPENROUTER_API_KEY={rotated}\n")  # what sops-nix/agenix do
    report = apply_spec(spec, home=hermes_home)
    assert read_env_file(hermes_home / ".env").values["OPENROUTER_API_KEY"] == rotated
    (change,) = [c for c in report.changes if c.path == hermes_home / ".env"]
    assert change.action == "updated"
    assert "OPENROUTER_API_KEY" in change.detail
    text = json.dumps(report.as_dict()) + "".join(report.warnings)
    assert SECRET not in text and rotated not in text
    assert report.recreate_container is False, "a secret never recreates the container"


# --- documents, auth.json, .managed -----------------------------------------------------------


def test_documents_are_installed_on_every_apply(tmp_path: Path, hermes_home: Path) -> None:
    spec = full_spec(tmp_path)
    workspace = Path(spec["workingDirectory"])
    apply_spec(spec, home=hermes_home)
    assert (workspace / "SOUL.md").read_text() == "Be terse.\n"
    assert (workspace / "USER.md").read_text() == "The user likes short answers.\n"
    # Edited in place: the declared content comes back on the next apply.
    (workspace / "SOUL.md").write_text("edited\n")
    report = apply_spec(spec, home=hermes_home)
    assert (workspace / "SOUL.md").read_text() == "Be terse.\n"
    assert [c.action for c in report.changes if c.path == workspace / "SOUL.md"] == ["updated"]
    # No longer declared: removed when untouched, kept (with a warning) when changed.
    (workspace / "USER.md").write_text("the agent's own notes\n")
    spec["documents"] = {}
    report = apply_spec(spec, home=hermes_home)
    assert not (workspace / "SOUL.md").exists()
    assert (workspace / "USER.md").read_text() == "the agent's own notes\n"
    assert any("USER.md" in w and "left in place" in w for w in report.warnings)


def test_unreadable_document_source_is_an_error(tmp_path: Path, hermes_home: Path) -> None:
    missing = tmp_path / "nope.md"
    spec = make_spec(tmp_path, documents={"SOUL.md": {"source": str(missing)}})
    with pytest.raises(HermesError) as caught:
        apply_spec(spec, home=hermes_home)
    assert f"documents.SOUL.md: cannot read {missing}" in str(caught.value)
    assert not hermes_home.exists()


def test_auth_json_seeded_only_when_absent_unless_forced(tmp_path: Path, hermes_home: Path) -> None:
    source = tmp_path / "auth.json"
    source.write_text('{"v": 1}\n')
    auth = hermes_home / "auth.json"
    spec = make_spec(tmp_path, authFile=str(source))
    report = apply_spec(spec, home=hermes_home)
    assert auth.read_text() == '{"v": 1}\n'
    assert mode(auth) == 0o600
    assert [c.action for c in report.changes if c.path == auth] == ["seeded"]
    # The agent refreshed its tokens: a new Nix source does not clobber them.
    auth.write_text('{"v": "refreshed"}\n')
    source.write_text('{"v": 2}\n')
    apply_spec(spec, home=hermes_home)
    assert auth.read_text() == '{"v": "refreshed"}\n'
    # Forced: overwritten, and then idempotent.
    spec["authFileForceOverwrite"] = True
    report = apply_spec(spec, home=hermes_home)
    assert auth.read_text() == '{"v": 2}\n'
    assert [c.action for c in report.changes if c.path == auth] == ["overwritten"]
    assert mode(auth) == 0o600
    assert apply_spec(spec, home=hermes_home).changes == []
    # Invalid JSON in the source: refused before anything is written.
    source.write_text("{not json")
    auth.write_text("{}")
    with pytest.raises(HermesError) as caught:
        apply_spec(spec, home=hermes_home)
    assert f"authFile {source}:1: not valid JSON" in str(caught.value)
    assert auth.read_text() == "{}"


def test_managed_marker(tmp_path: Path, hermes_home: Path) -> None:
    apply_spec(make_spec(tmp_path), home=hermes_home)
    assert (hermes_home / ".managed").read_text() == "nixos\n"
    assert manager() == "nixos"


# --- the container identity --------------------------------------------------------------


def _container(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "enable": True,
        "backend": "docker",
        "image": "ubuntu:24.04",
        "extraVolumes": ["/srv/data:/srv/data:ro"],
        "extraOptions": ["--cpus=2"],
        "entrypoint": "#!/bin/sh\nexec /data/current-package/bin/hermes gateway run --replace\n",
    }
    return {**base, **over}


RECREATES = {
    "image": {"container": _container(image="debian:12")},
    "extraVolumes added": {
        "container": _container(extraVolumes=["/a:/a", "/srv/data:/srv/data:ro"])
    },
    "extraVolumes removed": {"container": _container(extraVolumes=[])},
    "extraOptions": {"container": _container(extraOptions=["--cpus=4"])},
    "entrypoint": {"container": _container(entrypoint="#!/bin/sh\nexec other\n")},
}
KEEPS = {
    "environment": {"environment": {"NEW": "1"}},
    "settings": {"settings": {"model": {"default": "other/model"}}},
    "documents": {"documents": {"SOUL.md": "changed\n"}},
    "mcpServers": {"mcpServers": {"x": {"command": "y"}}},
    "authFile force": {"authFileForceOverwrite": True},
    "backend": {"container": _container(backend="podman")},
    "workingDirectory": {"workingDirectory": "/srv/elsewhere"},
}


@pytest.mark.parametrize("change", list(RECREATES), ids=list(RECREATES))
def test_identity_changes_with(tmp_path: Path, change: str) -> None:
    base = make_spec(tmp_path, container=_container())
    assert container_identity(base) != container_identity({**base, **RECREATES[change]})


@pytest.mark.parametrize("change", list(KEEPS), ids=list(KEEPS))
def test_identity_ignores(tmp_path: Path, change: str) -> None:
    base = make_spec(tmp_path, container=_container(), documents={"SOUL.md": "a\n"})
    assert container_identity(base) == container_identity({**base, **KEEPS[change]})


def test_identity_changes_with_the_schema_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tmp_path, container=_container())
    before = container_identity(spec)
    monkeypatch.setattr(identity, "CONTAINER_SCHEMA_VERSION", 2)
    assert container_identity(spec) != before


def test_identity_file_and_recreate_verdict(tmp_path: Path, hermes_home: Path) -> None:
    spec = full_spec(tmp_path)
    spec["container"] = _container()
    id_file = tmp_path / "state" / ".container-identity"
    first = apply_spec(spec, home=hermes_home)
    assert first.recreate_container is True, "no container recorded yet"
    assert first.container_identity == container_identity(spec)
    assert id_file.read_text() == container_identity(spec) + "\n"
    # A package/settings/secret change keeps the container.
    spec["settings"] = {"max_turns": 3}
    spec["environment"] = {"EXTRA": "1"}
    assert apply_spec(spec, home=hermes_home).recreate_container is False
    # A new image recreates it, once.
    spec["container"] = _container(image="debian:12")
    assert apply_spec(spec, home=hermes_home).recreate_container is True
    assert apply_spec(spec, home=hermes_home).recreate_container is False
    # Container mode off: no identity; back on: created anew.
    spec["container"] = _container(enable=False, image="debian:12")
    off = apply_spec(spec, home=hermes_home)
    assert off.container_identity is None and not id_file.exists()
    spec["container"] = _container(image="debian:12")
    assert apply_spec(spec, home=hermes_home).recreate_container is True


# --- spec validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"stateDir": "/s"}, 'version: missing; this hermes applies "version": 1'),
        ({"version": 2, "stateDir": "/s"}, "unsupported spec version 2"),
        ({"version": True, "stateDir": "/s"}, "unsupported spec version true"),
        ({"version": 1}, "stateDir: missing"),
        ({"version": 1, "stateDir": "rel/dir"}, "stateDir: expected an absolute path"),
        ({"version": 1, "stateDir": "/s", "stateDirectory": "/x"}, "stateDirectory: unknown key"),
        ({"version": 1, "stateDir": "/s", "settings": []}, "settings: expected an object"),
        ({"version": 1, "stateDir": "/s", "environment": {"A": 1}}, "environment.A: expected a"),
        (
            {"version": 1, "stateDir": "/s", "environment": {"BAD-NAME": "x"}},
            "environment.BAD-NAME: not a valid environment variable name",
        ),
        (
            {"version": 1, "stateDir": "/s", "environmentFiles": "/run/x"},
            "environmentFiles: expected a list",
        ),
        (
            {"version": 1, "stateDir": "/s", "authFileForceOverwrite": "yes"},
            "authFileForceOverwrite: expected true or false",
        ),
        (
            {"version": 1, "stateDir": "/s", "documents": {"../x.md": "a"}},
            "documents.../x.md: a document name must be a plain file name",
        ),
        (
            {"version": 1, "stateDir": "/s", "documents": {"a.md": {"path": "/x"}}},
            'documents.a.md: expected a string or {"source"',
        ),
        ({"version": 1, "stateDir": "/s", "mcpServers": {"x": "cmd"}}, "mcpServers.x: expected"),
        (
            {"version": 1, "stateDir": "/s", "container": {"backend": "lxc"}},
            "container.backend: must be one of docker, podman",
        ),
        (
            {"version": 1, "stateDir": "/s", "container": {"volumes": []}},
            "container.volumes: unknown key",
        ),
        (
            {"version": 1, "stateDir": "/s", "container": {"extraOptions": ["--a", 3]}},
            "container.extraOptions[1]: expected a string",
        ),
    ],
)
def test_bad_specs_are_refused_before_anything_is_written(
    hermes_home: Path, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        apply_spec(spec, home=hermes_home)
    assert message in str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE
    assert not hermes_home.exists()


def test_every_problem_is_listed_at_once(hermes_home: Path) -> None:
    spec = {"version": 1, "stateDir": "/s", "extra": 1, "settings": 3, "container": {"image": ""}}
    with pytest.raises(SpecError) as caught:
        apply_spec(spec, home=hermes_home)
    assert len(caught.value.problems) == 3


# --- the CLI ------------------------------------------------------------------------------


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_cli_apply_reports_changes_never_secrets(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    spec = full_spec(tmp_path)
    path = write_spec(tmp_path, spec)
    result = hermes("deploy", "apply", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"hermes deploy: applied {path} to {hermes_home}\n")
    assert f"created     {hermes_home / 'config.yaml'}" in result.stdout
    assert "OPENROUTER_API_KEY" in result.stdout
    assert f"identity {container_identity(spec)[:16]} changed: recreate" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert read_env_file(hermes_home / ".env").values["OPENROUTER_API_KEY"] == SECRET
    again = hermes("deploy", "apply", str(path))
    assert again.returncode == 0
    assert "nothing changed" in again.stdout
    assert "unchanged: keep the container" in again.stdout


def test_cli_apply_json_and_explicit_home(hermes: Runner, tmp_path: Path) -> None:
    spec = full_spec(tmp_path)
    other = tmp_path / "other-home"
    result = hermes(
        "deploy", "apply", "--json", "--home", str(other), str(write_spec(tmp_path, spec))
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["home"] == str(other)
    assert report["container"] == {"identity": container_identity(spec), "recreate": True}
    assert (other / ".managed").read_text() == "nixos\n"
    assert SECRET not in result.stdout


def test_cli_apply_works_in_managed_mode(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    path = write_spec(tmp_path, make_spec(tmp_path, settings={"max_turns": 7}))
    result = hermes("deploy", "apply", str(path), env={"HERMES_MANAGED": "true"})
    assert result.returncode == 0, result.stderr
    assert read_yaml(hermes_home / "config.yaml") == {"max_turns": 7}
    # And with the marker it wrote itself.
    result = hermes("deploy", "apply", str(path))
    assert result.returncode == 0, result.stderr


def test_cli_identity(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, container=_container())
    result = hermes("deploy", "identity", str(write_spec(tmp_path, spec)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == container_identity(spec) + "\n"
    assert not hermes_home.exists(), "computing the identity writes nothing"


def test_cli_bad_spec_exits_2_without_traceback(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    path = write_spec(tmp_path, {"version": 1, "stateDir": "/s", "container": {"image": 5}})
    result = hermes("deploy", "apply", str(path))
    assert_clean_failure(result, 2)
    assert f"hermes: {path}: container.image: expected a string, got integer" in result.stderr
    assert not hermes_home.exists()
    path.write_text('{"version": 1,\n "stateDir": "/s",,}')
    result = hermes("deploy", "apply", str(path))
    assert_clean_failure(result, 2)
    assert f"{path}:2:" in result.stderr and "not valid JSON" in result.stderr
    result = hermes("deploy", "identity", str(tmp_path / "absent.json"))
    assert_clean_failure(result, 2)
    assert "absent.json: cannot read" in result.stderr
    result = hermes("deploy")
    assert result.returncode == 2
    assert "choose an action" in result.stderr
    assert not hermes_home.exists()


def test_cli_missing_environment_file(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "secrets.env"
    path = write_spec(tmp_path, make_spec(tmp_path, environmentFiles=[str(missing)]))
    result = hermes("deploy", "apply", str(path))
    assert_clean_failure(result, 1)
    assert f"environment file {missing} does not exist" in result.stderr
    assert not hermes_home.exists()


def test_cli_warnings_go_to_stderr(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    path = write_spec(tmp_path, make_spec(tmp_path, settings={"future_key": 1}))
    result = hermes("deploy", "apply", str(path))
    assert result.returncode == 0
    assert "hermes: warning: settings.future_key: unknown to this hermes" in result.stderr


def test_apply_does_not_need_write_access_beyond_its_targets(
    tmp_path: Path, hermes_home: Path
) -> None:
    """The state dir may be 0750 and owned by the service user: modes of existing dirs stay."""
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    os.chmod(state, 0o750)
    hermes_home.mkdir(mode=0o750)
    os.chmod(hermes_home, 0o750)
    apply_spec(make_spec(tmp_path, container=_container()), home=hermes_home)
    assert mode(state) == 0o750
    assert mode(hermes_home) == 0o750
