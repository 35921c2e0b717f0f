"""`hermes config ...` run as a user would: the real console script in a subprocess."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import yaml

from conftest import Runner
from helpers import assert_clean_failure


def user_config(home: Path) -> object:
    return yaml.safe_load((home / "config.yaml").read_text())


def test_set_get_unset_round_trip(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("config", "set", "model.default", "openai/gpt-4.1")
    assert result.returncode == 0, result.stderr
    assert hermes("config", "get", "model.default").stdout == "openai/gpt-4.1\n"
    assert user_config(hermes_home) == {"model": {"default": "openai/gpt-4.1"}}
    assert stat.S_IMODE((hermes_home / "config.yaml").stat().st_mode) == 0o600

    assert hermes("config", "set", "terminal.timeout", "45").returncode == 0
    assert hermes("config", "set", "toolsets", "[file, web]").returncode == 0
    assert hermes("config", "set", "streaming.enabled", "false").returncode == 0
    assert user_config(hermes_home) == {
        "model": {"default": "openai/gpt-4.1"},
        "terminal": {"timeout": 45},
        "toolsets": ["file", "web"],
        "streaming": {"enabled": False},
    }
    assert hermes("config", "get", "toolsets").stdout == "- file\n- web\n"
    assert hermes("config", "get", "streaming.enabled").stdout == "false\n"

    result = hermes("config", "unset", "terminal.timeout")
    assert result.returncode == 0
    assert "default: 180" in result.stdout
    assert hermes("config", "get", "terminal.timeout").stdout == "180\n"
    assert "terminal" not in user_config(hermes_home)  # type: ignore[operator]


def test_set_takes_a_string_that_is_not_yaml_literally(hermes: Runner, hermes_home: Path) -> None:
    # `@` cannot start a plain YAML value, but for a string key the meaning is plain.
    result = hermes("config", "set", "gateway.platforms.matrix.user_id", "@bot:example.org")
    assert result.returncode == 0, result.stderr
    assert hermes("config", "get", "gateway.platforms.matrix.user_id").stdout == (
        "@bot:example.org\n"
    )
    assert "'@bot:example.org'" in (hermes_home / "config.yaml").read_text()
    # For a key of another kind, unparsable YAML is still an error.
    bad = hermes("config", "set", "toolsets", "[file, web")
    assert bad.returncode == 2 and "cannot parse the value as YAML" in bad.stderr


def test_get_of_a_section_prints_yaml(hermes: Runner) -> None:
    out = hermes("config", "get", "memory").stdout
    assert yaml.safe_load(out) == {
        "memory_enabled": True,
        "user_profile_enabled": True,
        "memory_char_limit": 2200,
        "user_char_limit": 1375,
        "write_approval": True,
    }


def test_string_settings_keep_words_yaml_would_convert(hermes: Runner, hermes_home: Path) -> None:
    assert hermes("config", "set", "display.personality", "yes").returncode == 0
    assert hermes("config", "set", "model.default", "3.5").returncode == 0
    assert user_config(hermes_home) == {
        "display": {"personality": "yes"},
        "model": {"default": "3.5"},
    }


def test_wrong_type_is_refused_and_nothing_written(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("config", "set", "terminal.timeout", "soon")
    assert_clean_failure(result, 2)
    assert "terminal.timeout: expected an integer, got 'soon' (string)" in result.stderr
    result = hermes("config", "set", "toolsets", "file")
    assert_clean_failure(result, 2)
    assert "expected a list of strings" in result.stderr
    result = hermes("config", "set", "terminal.backend", "kubernetes")
    assert_clean_failure(result, 2)
    assert "must be one of local, ssh, docker" in result.stderr
    assert not (hermes_home / "config.yaml").exists()


def test_unknown_key_refused_unless_forced(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("config", "set", "model.defualt", "x")
    assert_clean_failure(result, 2)
    assert "unknown key model.defualt; did you mean model.default?" in result.stderr
    assert not (hermes_home / "config.yaml").exists()
    result = hermes("config", "set", "--force", "future.option", "1")
    assert result.returncode == 0, result.stderr
    assert user_config(hermes_home) == {"future": {"option": 1}}


def test_sections_and_open_mappings(hermes: Runner, hermes_home: Path) -> None:
    result = hermes("config", "set", "model", "x")
    assert_clean_failure(result, 2)
    assert "model is a section; set one of its keys: model.api_key_env" in result.stderr
    result = hermes("config", "set", "mcp_servers.fs.command", "mcp-server-filesystem")
    assert result.returncode == 0, result.stderr
    assert user_config(hermes_home) == {"mcp_servers": {"fs": {"command": "mcp-server-filesystem"}}}


def test_secrets_go_to_dotenv_0600_not_config(hermes: Runner, hermes_home: Path) -> None:
    secret = "sk-or-v1-THIS-IS-SECRET-0123456789"
    result = hermes("config", "set", "OPENROUTER_API_KEY", secret)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    env = hermes_home / ".env"
    assert env.read_text() == f"OPENROUTER_API_KEY={secret}\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert not (hermes_home / "config.yaml").exists()
    shown = hermes("config", "show").stdout
    assert secret not in shown and "OPENROUTER_API_KEY=sk-o…6789" in shown
    assert hermes("config", "get", "OPENROUTER_API_KEY").stdout == "sk-o…6789\n"
    assert hermes("config", "set", "TELEGRAM_BOT_TOKEN", "123:abc def").returncode == 0
    assert hermes("config", "unset", "OPENROUTER_API_KEY").returncode == 0
    assert env.read_text() == "TELEGRAM_BOT_TOKEN='123:abc def'\n"


def test_show_is_the_default_and_reflects_the_file(hermes: Runner) -> None:
    hermes("config", "set", "max_turns", "12")
    shown = hermes("config")
    assert shown.returncode == 0
    assert shown.stdout == hermes("config", "show").stdout
    assert yaml.safe_load(shown.stdout)["max_turns"] == 12


def test_paths(hermes: Runner, hermes_home: Path) -> None:
    assert hermes("config", "path").stdout == f"{hermes_home / 'config.yaml'}\n"
    assert hermes("config", "env-path").stdout == f"{hermes_home / '.env'}\n"


def test_broken_config_is_never_overwritten(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    broken = "model:\n  default: x\n   base_url: y\n"
    (hermes_home / "config.yaml").write_text(broken)
    result = hermes("config", "set", "max_turns", "3")
    assert_clean_failure(result, 2)
    assert f"{hermes_home}/config.yaml:3: " in result.stderr
    assert "left unchanged" in result.stderr
    assert (hermes_home / "config.yaml").read_text() == broken
    for args in (("config", "show"), ("config", "get", "max_turns")):
        result = hermes(*args)
        assert_clean_failure(result, 2)
        assert f"{hermes_home}/config.yaml:3: " in result.stderr


def test_check_lists_every_problem_with_key_and_line(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    config = hermes_home / "config.yaml"
    config.write_text("max_turns: many\nterminal:\n  timeout: -1\nmystery: 1\n")
    env = hermes_home / ".env"
    env.write_text("GOOD=1\nnot a binding\n")
    env.chmod(0o644)
    result = hermes("config", "check")
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"{config}:1: max_turns: expected an integer, got 'many' (string)",
        f"{config}:3: terminal.timeout: must be at least 1; got -1",
        f"{config}:4: mystery: unknown key",
        f"{env}:2: cannot parse this line; expected KEY=value (line skipped)",  # Not quoted.
        f"{env}: mode 0644 lets others read secrets; run chmod 600 {env}",
    ]
    assert "5 problems found" in result.stderr


def test_check_resolves_variables_from_dotenv(hermes: Runner, hermes_home: Path) -> None:
    assert hermes("config", "set", "model.base_url", "${LOCAL_LLM}").returncode == 0
    result = hermes("config", "check")
    assert result.returncode == 2
    assert "LOCAL_LLM is not set" in result.stdout
    assert hermes("config", "set", "LOCAL_LLM_TOKEN", "t").returncode == 0
    (hermes_home / ".env").write_text("LOCAL_LLM=http://127.0.0.1:1/v1\n")
    result = hermes("config", "check")
    assert result.returncode == 0, result.stdout
    assert result.stdout == f"{hermes_home}/config.yaml: OK\n"


def test_check_reports_what_chat_would_refuse(hermes: Runner, hermes_home: Path) -> None:
    """Types right, values chat refuses: a bad fallback entry, a base URL that is not HTTP."""
    hermes_home.mkdir()
    config = hermes_home / "config.yaml"
    config.write_text(
        "model:\n  provider: custom\n  base_url: ftp://h/v1\n"
        "fallback_providers:\n  - provider: bogus\n    model: x\n"
    )
    result = hermes("config", "check")
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"{config}: fallback_providers entry 1: unknown provider 'bogus'; "
        "choose one of: openrouter, anthropic, openai, custom",
        f"{config}: model.base_url: must start with http:// or https://",
    ]
    config.write_text("model:\n  provider: custom\n  base_url: ftp://h/v1\n")
    chat = hermes("chat", "-q", "hi")  # Refused at once, not retried as "cannot reach".
    assert chat.returncode == 2 and "Traceback" not in chat.stderr
    assert "must start with http:// or https://" in chat.stderr
    assert "retrying" not in chat.stderr


def test_dotenv_bad_line_warns_and_rest_loads(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / ".env").write_text("=oops\nHOST_URL=http://h\n")
    hermes("config", "set", "model.base_url", "${HOST_URL}")
    result = hermes("config", "check")
    assert f"{hermes_home}/.env:1: " in result.stdout
    assert "HOST_URL is not set" not in result.stdout


def test_comments_lost_on_rewrite_are_announced(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("# mine\nmax_turns: 4\n")
    result = hermes("config", "set", "max_turns", "5")
    assert result.returncode == 0
    assert "comments in config.yaml are not kept" in result.stderr


def write_editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(f"import sys\npath = sys.argv[1]\n{body}\n")
    return f"{sys.executable} {script}"


def test_edit_saves_a_valid_change(hermes: Runner, hermes_home: Path, tmp_path: Path) -> None:
    hermes("config", "set", "max_turns", "4")
    editor = write_editor(tmp_path, "open(path, 'a').write('agent:\\n  verbose: true\\n')")
    result = hermes("config", "edit", env={"EDITOR": editor})
    assert result.returncode == 0, result.stderr
    assert user_config(hermes_home) == {"max_turns": 4, "agent": {"verbose": True}}
    assert sorted(p.name for p in hermes_home.iterdir()) == ["config.yaml", "home.lock"], "no draft"


def test_edit_rejects_an_invalid_file_and_keeps_the_draft(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    hermes("config", "set", "max_turns", "4")
    before = (hermes_home / "config.yaml").read_text()
    editor = write_editor(tmp_path, "open(path, 'w').write('max_turns: [\\n')")
    result = hermes("config", "edit", env={"EDITOR": editor})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (hermes_home / "config.yaml").read_text() == before
    draft = hermes_home / ".config.yaml.edit.yaml"
    assert draft.read_text() == "max_turns: [\n"
    assert f"your draft is kept in {draft}" in result.stderr


def test_edit_with_a_failing_editor_changes_nothing(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    editor = write_editor(tmp_path, "sys.exit(3)")
    result = hermes("config", "edit", env={"EDITOR": editor})
    assert_clean_failure(result, 1)
    assert "editor exited with status 3" in result.stderr
    assert not (hermes_home / "config.yaml").exists()
