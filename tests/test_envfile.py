"""`.env`: parsed with python-dotenv, edited line by line, always 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hermes_agent.config.envfile import (
    is_secret_name,
    load_env_file,
    mask,
    read_env_file,
    set_env_value,
    unset_env_value,
)


def test_bad_line_is_reported_with_its_number_and_the_rest_loads(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n# comment\nthis line is not a binding\nexport B='two words'\nC=3\n")
    parsed = read_env_file(env)
    assert parsed.values == {"A": "1", "B": "two words", "C": "3"}
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith(f"{env}:3: cannot parse")


def test_existing_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("OPENROUTER_API_KEY=from-file\nOTHER=file\n")
    environ = {"OPENROUTER_API_KEY": "from-shell"}
    assert load_env_file(env, environ) == []
    assert environ == {"OPENROUTER_API_KEY": "from-shell", "OTHER": "file"}


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_env_file(tmp_path / "nope", {}) == []


def test_values_are_literal_no_interpolation(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nB='x${A}y'\n")
    assert read_env_file(env).values["B"] == "x${A}y"


def test_set_keeps_every_other_line_byte_for_byte(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    original = "# my keys\nexport A=1   # inline\n\nTOKEN_X=old\nZ='q'\n"
    env.write_text(original)
    set_env_value(env, "TOKEN_X", "new")
    assert env.read_text() == original.replace("TOKEN_X=old", "TOKEN_X=new")
    set_env_value(env, "ADDED_TOKEN", "v")
    assert env.read_text() == original.replace("TOKEN_X=old", "TOKEN_X=new") + "ADDED_TOKEN=v\n"


def test_set_appends_newline_to_unterminated_last_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1")
    set_env_value(env, "B", "2")
    assert env.read_text() == "A=1\nB=2\n"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "with space",
        "quote'single",
        'quote"double',
        "hash # here",
        "dollar $HOME ${X}",
        "back\\slash",
        "sk-or-v1-0123456789abcdef=",
        "",
    ],
)
def test_values_round_trip(tmp_path: Path, value: str) -> None:
    env = tmp_path / ".env"
    set_env_value(env, "K_TOKEN", value)
    assert read_env_file(env).values == {"K_TOKEN": value}


def test_file_is_0600_when_created_and_rewritten(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    set_env_value(env, "A_TOKEN", "1")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    env.chmod(0o644)
    set_env_value(env, "A_TOKEN", "2")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_unset_removes_every_binding_of_the_key(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nB=2\nA=3\n")
    assert unset_env_value(env, "A") is True
    assert env.read_text() == "B=2\n"
    assert unset_env_value(env, "A") is False


def test_secret_names() -> None:
    for name in ("OPENROUTER_API_KEY", "TELEGRAM_BOT_TOKEN", "MATRIX_PASSWORD", "X_SECRET"):
        assert is_secret_name(name)
    for name in ("model.default", "openrouter_api_key", "API_KEY_FILE", "TOKEN"):
        assert not is_secret_name(name)


def test_mask_never_shows_most_of_a_secret() -> None:
    assert mask("sk-or-v1-0123456789abcdef") == "sk-o…cdef"
    assert mask("short") == "****"
    assert mask("") == "(empty)"
