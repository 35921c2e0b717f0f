"""Layering (defaults, config.yaml, .env, environment) and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_agent.config import loader
from hermes_agent.config.schema import DEFAULT_CONFIG, SETTINGS, check_value
from hermes_agent.errors import ConfigError


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_alone_when_there_is_no_file(hermes_home: Path) -> None:
    config = loader.load_config()
    assert config.data == DEFAULT_CONFIG
    assert config.user == {}
    assert config.get("model.provider") == "openrouter"
    assert config.get("terminal.timeout") == 180


def test_file_overrides_defaults_and_keeps_the_rest(hermes_home: Path) -> None:
    write(hermes_home, "model:\n  default: gpt-4.1\nterminal:\n  timeout: 30\ntoolsets: [file]\n")
    config = loader.load_config()
    assert config.get("model.default") == "gpt-4.1"
    assert config.get("model.provider") == "openrouter", "sibling default kept"
    assert config.get("terminal.timeout") == 30
    assert config.get("terminal.backend") == "local"
    assert config.get("toolsets") == ["file"], "lists replace, not append"
    assert config.user == {
        "model": {"default": "gpt-4.1"},
        "terminal": {"timeout": 30},
        "toolsets": ["file"],
    }


def test_env_interpolation_uses_environment(hermes_home: Path) -> None:
    write(hermes_home, "model:\n  base_url: ${LLM_HOST}/v1\nterminal:\n  cwd: $${literal}\n")
    config = loader.load_config(environ={"LLM_HOST": "http://127.0.0.1:8080"})
    assert config.get("model.base_url") == "http://127.0.0.1:8080/v1"
    assert config.get("terminal.cwd") == "${literal}"
    raw = loader.load_config(interpolate=False)
    assert raw.get("model.base_url") == "${LLM_HOST}/v1"


def test_interpolation_only_where_documented(hermes_home: Path) -> None:
    write(hermes_home, "model:\n  default: ${NOT_EXPANDED}\n")
    assert loader.load_config(environ={}).get("model.default") == "${NOT_EXPANDED}"


def test_unset_variable_is_an_error_with_key_and_line(hermes_home: Path) -> None:
    path = write(hermes_home, "# c\nmodel:\n  base_url: ${MISSING_HOST}\n")
    with pytest.raises(ConfigError) as info:
        loader.load_config(environ={})
    assert str(info.value) == (
        f"{path}:3: model.base_url: ${{MISSING_HOST}} is used but MISSING_HOST is not set "
        "(.env or environment)"
    )


def test_type_errors_name_file_line_and_key_all_at_once(hermes_home: Path) -> None:
    path = write(
        hermes_home,
        "model:\n  default: 3\nterminal:\n  timeout: soon\n  backend: k8s\n"
        "compression:\n  threshold: 7\n",
    )
    with pytest.raises(ConfigError) as info:
        loader.load_config()
    assert info.value.problems == [
        f"{path}:2: model.default: expected a string, got 3 (integer)",
        f"{path}:4: terminal.timeout: expected an integer, got 'soon' (string)",
        f"{path}:5: terminal.backend: must be one of local, ssh, docker; got 'k8s'",
        f"{path}:7: compression.threshold: must be at most 1; got 7",
    ]


def test_syntax_error_names_file_and_line(hermes_home: Path) -> None:
    path = write(hermes_home, "model:\n  default: x\n  base_url: [unclosed\nother: 1\n")
    with pytest.raises(ConfigError) as info:
        loader.load_config()
    message = str(info.value)
    assert message.startswith(f"{path}:4: "), message


def test_top_level_must_be_a_mapping(hermes_home: Path) -> None:
    path = write(hermes_home, "- a\n- b\n")
    with pytest.raises(ConfigError, match=f"{path}:1: expected a mapping"):
        loader.load_config()


def test_not_utf8_names_the_line(hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: not valid UTF-8"):
        loader.load_config()


def test_empty_file_and_empty_section_mean_defaults(hermes_home: Path) -> None:
    write(hermes_home, "")
    assert loader.load_config().data == DEFAULT_CONFIG
    write(hermes_home, "model:\n  # default: x\n")
    assert loader.load_config().data == DEFAULT_CONFIG


def test_unknown_keys_warn_but_load(hermes_home: Path) -> None:
    path = write(hermes_home, "modle:\n  default: x\nmodel:\n  temperature: 0.2\n")
    config = loader.load_config()
    assert config.warnings == [
        f"{path}:1: modle: unknown key (ignored; see `hermes config check`)",
        f"{path}:4: model.temperature: unknown key (ignored; see `hermes config check`)",
    ]
    assert config.get("model.default") == DEFAULT_CONFIG["model"]["default"]


def test_check_reports_duplicates_unknown_and_types(hermes_home: Path) -> None:
    path = write(hermes_home, "max_turns: 5\nmax_turns: 0\nbogus: 1\n")
    assert loader.check_config() == [
        f"{path}:2: max_turns: set again (first on line 1); the last one wins",
        f"{path}:2: max_turns: must be at least 1; got 0",
        f"{path}:3: bogus: unknown key",
    ]


def test_every_default_passes_its_own_check() -> None:
    for setting in SETTINGS:
        assert check_value(setting, setting.default) is None, setting.key
        assert setting.doc.strip(), f"{setting.key} needs its meaning written down"


def test_keys_promised_by_the_deployment_docs_exist() -> None:
    promised = [
        "model.default",
        "model.base_url",
        "toolsets",
        "max_turns",
        "terminal.backend",
        "terminal.cwd",
        "terminal.timeout",
        "compression.enabled",
        "compression.threshold",
        "compression.summary_model",
        "memory.memory_enabled",
        "memory.user_profile_enabled",
        "display.compact",
        "display.personality",
        "agent.max_turns",
        "agent.verbose",
        "skills.disabled",
        "streaming.enabled",
        "mcp_servers",
    ]
    keys = {s.key for s in SETTINGS}
    assert [k for k in promised if k not in keys] == []


def test_save_is_0600_and_reloads_identically(hermes_home: Path) -> None:
    data = {"model": {"default": "x: y"}, "toolsets": ["a", "b"], "mcp_servers": {"fs": {}}}
    loader.save_user_config(data)
    path = hermes_home / "config.yaml"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert loader.read_user_config()[0] == data
