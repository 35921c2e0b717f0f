"""`hermes setup`: the wizard through a real pseudo-terminal, and the flags for scripts."""

from __future__ import annotations

import stat
from pathlib import Path

import pexpect
import yaml

from conftest import HERMES, Runner, clean_env
from helpers import assert_clean_failure


def spawn(home: Path, cwd: Path, **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        str(HERMES),
        ["setup"],
        env=clean_env(home, **env),
        cwd=str(cwd),
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 200),
    )
    return child


def config(home: Path) -> object:
    return yaml.safe_load((home / "config.yaml").read_text())


def test_wizard_openrouter_defaults(hermes_home: Path, tmp_path: Path) -> None:
    secret = "sk-or-v1-wizard-secret-0123456789"
    child = spawn(hermes_home, tmp_path)
    child.expect_exact("Choose a number or name [1]: ")
    child.sendline("")
    child.expect_exact("OPENROUTER_API_KEY (input is hidden): ")
    child.sendline(secret)
    child.expect_exact("Default model [anthropic/claude-sonnet-4]: ")
    child.sendline("")
    child.expect_exact(f"Workspace (the agent's working directory) [{tmp_path}]: ")
    child.sendline("ws")
    child.expect(pexpect.EOF)
    child.close()
    transcript = child.before or ""
    assert child.exitstatus == 0, transcript
    assert secret not in transcript, "the key was echoed to the terminal"
    assert config(hermes_home) == {
        "model": {"provider": "openrouter", "default": "anthropic/claude-sonnet-4"},
        "terminal": {"cwd": str(tmp_path / "ws")},
    }
    env = hermes_home / ".env"
    assert env.read_text() == f"OPENROUTER_API_KEY={secret}\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert (tmp_path / "ws").is_dir()


def test_wizard_custom_endpoint_reasks_bad_answers(hermes_home: Path, tmp_path: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("max_turns: 9\n")
    child = spawn(hermes_home, tmp_path)
    child.expect_exact("Choose a number or name [1]: ")
    child.sendline("7")
    child.expect_exact("Please answer 1-4")
    child.expect_exact("Choose a number or name [1]: ")
    child.sendline("custom")
    child.expect_exact("Base URL (for example http://127.0.0.1:11434/v1 for Ollama): ")
    child.sendline("localhost:11434")
    child.expect_exact("base URL must start with http:// or https://")
    child.expect_exact("Base URL")
    child.sendline("http://127.0.0.1:11434/v1/")
    child.expect_exact("Enter for none): ")
    child.sendline("")
    child.expect_exact("Default model: ")
    child.sendline("")
    child.expect_exact("A model id is needed")
    child.expect_exact("Default model: ")
    child.sendline("llama3.1:8b")
    child.expect_exact("Workspace")
    child.sendline(str(tmp_path))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert config(hermes_home) == {
        "max_turns": 9,
        "model": {
            "provider": "custom",
            "default": "llama3.1:8b",
            "base_url": "http://127.0.0.1:11434/v1",
        },
        "terminal": {"cwd": str(tmp_path)},
    }
    assert not (hermes_home / ".env").exists(), "no key given, none stored"


def test_wizard_keeps_an_existing_key(hermes_home: Path, tmp_path: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-existing-0123456789\n")
    child = spawn(hermes_home, tmp_path)
    child.expect_exact("Choose a number or name [1]: ")
    child.sendline("2")
    child.expect_exact("ANTHROPIC_API_KEY is already set (sk-a…6789).")
    child.expect_exact("Enter keeps the current one): ")
    child.sendline("")
    child.expect_exact("Default model [claude-sonnet-4-6]: ")
    child.sendline("")
    child.expect_exact("Workspace")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (hermes_home / ".env").read_text() == "ANTHROPIC_API_KEY=sk-ant-existing-0123456789\n"
    assert config(hermes_home)["model"]["provider"] == "anthropic"  # type: ignore[index]


def test_wizard_cancelled_with_ctrl_d_changes_nothing(hermes_home: Path, tmp_path: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("max_turns: 9\n")
    child = spawn(hermes_home, tmp_path)
    child.expect_exact("Choose a number or name [1]: ")
    child.sendline("1")
    child.expect_exact("(input is hidden): ")
    child.sendline("sk-typed-but-abandoned-000000")
    child.expect_exact("Default model")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "setup cancelled; nothing was changed" in (child.before or "")
    assert (hermes_home / "config.yaml").read_text() == "max_turns: 9\n"
    assert not (hermes_home / ".env").exists()


def test_non_interactive_takes_key_from_named_variable(
    hermes: Runner, hermes_home: Path, tmp_path: Path
) -> None:
    result = hermes(
        "setup",
        "--non-interactive",
        "--provider",
        "openai",
        "--model",
        "gpt-4.1-mini",
        "--api-key-env",
        "WORK_OPENAI_KEY",
        "--workspace",
        str(tmp_path / "w"),
        env={"WORK_OPENAI_KEY": "sk-proj-from-env-0123456789"},
    )
    assert result.returncode == 0, result.stderr
    assert "sk-proj-from-env-0123456789" not in result.stdout
    assert config(hermes_home) == {
        "model": {
            "provider": "openai",
            "default": "gpt-4.1-mini",
            "api_key_env": "WORK_OPENAI_KEY",
        },
        "terminal": {"cwd": str(tmp_path / "w")},
    }
    assert (hermes_home / ".env").read_text() == "WORK_OPENAI_KEY=sk-proj-from-env-0123456789\n"


def test_non_interactive_switching_provider_drops_stale_endpoint(
    hermes: Runner, hermes_home: Path
) -> None:
    hermes(
        "setup",
        "--non-interactive",
        "--provider",
        "custom",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:8000/v1",
    )
    result = hermes("setup", "--non-interactive", "--provider", "openrouter")
    assert result.returncode == 0, result.stderr
    assert "key        none yet; add it with: hermes config set OPENROUTER_API_KEY KEY" in (
        result.stdout
    )
    model = config(hermes_home)["model"]  # type: ignore[index]
    assert model == {"provider": "openrouter", "default": "anthropic/claude-sonnet-4"}


def test_non_interactive_bad_flags(hermes: Runner, hermes_home: Path) -> None:
    cases = [
        (("--provider", "custom", "--model", "m"), "--provider custom needs --base-url"),
        (("--provider", "custom", "--base-url", "http://h/v1"), "has no default model"),
        (("--base-url", "ftp://x"), "base URL must start with http:// or https://"),
        (("--api-key-env", "1BAD"), "is not a valid environment variable name"),
    ]
    for flags, message in cases:
        result = hermes("setup", "--non-interactive", *flags)
        assert_clean_failure(result, 2)
        assert message in result.stderr
    result = hermes("setup", "--non-interactive", "--provider", "nope")
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr
    assert not hermes_home.exists() or not (hermes_home / "config.yaml").exists()


def test_without_a_terminal_the_wizard_explains_the_flags(hermes: Runner) -> None:
    result = hermes("setup")
    assert_clean_failure(result, 2)
    assert "hermes setup --non-interactive" in result.stderr


def test_broken_config_is_not_overwritten_by_setup(hermes: Runner, hermes_home: Path) -> None:
    hermes_home.mkdir()
    (hermes_home / "config.yaml").write_text("model: [\n")
    result = hermes("setup", "--non-interactive")
    assert_clean_failure(result, 2)
    assert (hermes_home / "config.yaml").read_text() == "model: [\n"
