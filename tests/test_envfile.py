"""`.env`: parsed with python-dotenv, edited line by line, always 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conftest import Runner
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


def test_a_line_that_is_not_utf8_is_skipped_by_number_and_the_rest_loads(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(
        b"\xef\xbb\xbfFIRST_TOKEN=one-1234567\n"  # A byte-order mark is not part of the name.
        b"LATIN=caf\xe9-s3cr3t-value\n"
        b"QUOTED='multi\n"
        b"line \xff zebra'\n"
        b"LAST_TOKEN=last-1234567\r\n"
    )
    parsed = read_env_file(env)
    assert parsed.values == {"FIRST_TOKEN": "one-1234567", "LAST_TOKEN": "last-1234567"}
    assert f"{env}:2: not UTF-8 text (line skipped; the other lines load)" in parsed.problems
    assert f"{env}:4: not UTF-8 text (line skipped; the other lines load)" in parsed.problems
    # The quoted value that lost its bad line is not half-loaded either.
    assert f"{env}:3: cannot parse this line; expected KEY=value (line skipped)" in parsed.problems
    shown = "\n".join(parsed.problems)
    assert "caf" not in shown and "s3cr3t" not in shown and "zebra" not in shown


def test_a_problem_never_quotes_the_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nsk-live-secret-pasted-without-a-name\nbad name=x\n")
    problems = read_env_file(env).problems
    assert [p.split(": ", 1)[0] for p in problems] == [f"{env}:2", f"{env}:3"]
    assert not any("sk-live" in p or "bad name" in p for p in problems)


def test_editing_a_file_with_a_bad_line_is_refused_by_line_number(tmp_path: Path) -> None:
    from hermes_agent.errors import HermesError

    env = tmp_path / ".env"
    original = b"A=1\nB=caf\xe9\n"
    env.write_bytes(original)
    with pytest.raises(HermesError, match=r":.*line 2 is not UTF-8 text"):
        set_env_value(env, "C", "3")
    assert env.read_bytes() == original


def test_bad_byte_keeps_the_other_secrets_redacted(hermes: Runner, hermes_home: Path) -> None:
    """One bad byte used to drop every key of .env, and with them their redaction."""
    from hermes_agent.redact import redact

    hermes_home.mkdir()
    (hermes_home / ".env").write_bytes(b"OTHER=\xff\nSERVICE_TOKEN=tok-1234567890abcdef\n")
    assert redact("got tok-1234567890abcdef") == "got [REDACTED]"
    result = hermes("config", "show")
    assert ".env:1: not UTF-8 text" in result.stderr
