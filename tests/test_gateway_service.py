"""`hermes gateway install|uninstall`: the systemd user unit and the launchd agent.

The unit is written by the real ``hermes`` command and checked by systemd's own
parser (``systemd-analyze --user verify``, installed by tests/peers/install.sh).
No systemd user manager runs on the test machines (and starting one as root on
a cgroup-v1 host would reorganise the host's cgroups), so the path where one is
reachable is exercised against a stand-in ``systemctl`` on PATH that records
its arguments; the path without one is the real ``systemctl`` failing to
connect. The launchd plist is generated on Linux by calling the generator for
``darwin`` and read back with plistlib.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HERMES, Runner, clean_env
from helpers import assert_clean_failure
from hermes_agent.errors import HermesError
from hermes_agent.gateway import service

SECRET = "sk-or-v1-very-secret-value-0123456789"
TOKEN = "123456:telegram-token-never-in-the-unit"


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A HOME, an XDG_CONFIG_HOME and an empty runtime dir: no user manager reachable."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (tmp_path / "user-home").mkdir()
    return {
        "HOME": str(tmp_path / "user-home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_RUNTIME_DIR": str(runtime),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={runtime}/no-bus",
    }


def unit_path(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "hermes-gateway.service"


def write_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".env").write_text(f"OPENROUTER_API_KEY={SECRET}\nTELEGRAM_BOT_TOKEN={TOKEN}\n")
    (home / "config.yaml").write_text(
        "gateway:\n  platforms:\n    api_server:\n      enabled: true\n"
    )


def verify(unit: Path, runtime: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed: run tests/peers/install.sh as root"
    return subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        env={**os.environ, "XDG_RUNTIME_DIR": runtime},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unit_passes_systemd_analyze_verify(
    hermes: Runner, hermes_home: Path, user_env: dict[str, str]
) -> None:
    write_home(hermes_home)
    result = hermes("gateway", "install", "--no-start", env=user_env)
    assert result.returncode == 0, result.stderr
    unit = unit_path(user_env)
    checked = verify(unit, user_env["XDG_RUNTIME_DIR"])
    # verify exits 0 on unknown keys and bad values too, printing warnings: both must be clean.
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stderr
    # The check can fail: a unit systemd does not understand is reported.
    broken = unit.with_name("broken.service")
    broken.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "sometimes" in verify(broken, user_env["XDG_RUNTIME_DIR"]).stderr


def test_unit_escapes_awkward_paths(
    hermes_home: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    """%, $, spaces and quotes in the paths survive systemd's unquoting.

    verify checks that the program in ExecStart= exists, so a hermes copied
    into an awkward directory proves the program path is escaped right.
    """
    awkward = tmp_path / "bin 100%! $HOME"
    awkward.mkdir()
    program = awkward / "hermes"
    shutil.copy2(HERMES, program)  # The console script: its shebang names the venv's python.
    home = tmp_path / "my hermes 100%! $HOME"
    write_home(home)
    result = subprocess.run(
        [str(program), "gateway", "install", "--no-start"],
        env=clean_env(home, **user_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    unit = unit_path(user_env)
    text = unit.read_text()
    assert f'ExecStart="{str(program).replace("%", "%%")}" "gateway"' in text
    assert 'Environment="HERMES_HOME=' + str(home).replace("%", "%%") + '"' in text
    checked = verify(unit, user_env["XDG_RUNTIME_DIR"])
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    # The check can fail: the same unit with the program path escaped wrongly is reported.
    wrong = unit.with_name("wrong.service")
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    wrong.write_text(text.replace(exec_line, exec_line.replace("$HOME", "$$HOME")))
    assert "is not executable" in verify(wrong, user_env["XDG_RUNTIME_DIR"]).stderr
    # A quote in the program path, which systemd refuses outright, is a clear error.
    quoted = tmp_path / "it's here"
    quoted.mkdir()
    shutil.copy2(HERMES, quoted / "hermes")
    refused = subprocess.run(
        [str(quoted / "hermes"), "gateway", "install", "--no-start"],
        env=clean_env(home, **user_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_failure(refused, 2)
    assert "quote" in refused.stderr
    assert unit.read_text() == text  # The installed unit was left alone.


def test_unit_runs_this_hermes_with_the_resolved_home_and_no_secrets(
    hermes: Runner, tmp_path: Path, user_env: dict[str, str]
) -> None:
    real_home = tmp_path / "real-home"
    write_home(real_home)
    link = tmp_path / "linked-home"
    link.symlink_to(real_home)
    missing = tmp_path / "no-such-dir"
    user_bin = tmp_path / "user-bin"
    user_bin.mkdir()
    path = os.pathsep.join([str(user_bin), str(missing), "relative/bin", os.environ["PATH"]])
    env = {**user_env, "HERMES_HOME": str(link), "PATH": path}
    result = hermes("gateway", "install", "--no-start", env=env)
    assert result.returncode == 0, result.stderr
    text = unit_path(user_env).read_text()
    # The absolute hermes of this venv, and the home resolved through the symlink.
    assert f'ExecStart="{HERMES.resolve()}" "gateway" "run" "--replace"' in text
    assert f'Environment="HERMES_HOME={real_home.resolve()}"' in text
    assert str(link) not in text
    (path_line,) = [line for line in text.splitlines() if line.startswith('Environment="PATH=')]
    entries = path_line.removeprefix('Environment="PATH=').removesuffix('"').split(":")
    assert entries[0] == str(HERMES.parent)  # The venv's bin comes first.
    assert str(user_bin) in entries  # The user's own PATH entries that exist...
    assert str(missing) not in entries and "relative/bin" not in entries  # ...only those.
    assert entries.index(str(user_bin)) < entries.index("/usr/bin")
    assert {"/usr/local/bin", "/usr/bin", "/bin"} <= set(entries)
    assert "Restart=on-failure" in text and "RestartSec=5" in text
    assert "WantedBy=default.target" in text
    for value in (SECRET, TOKEN, "telegram-token"):
        assert value not in text
    assert "--no-start" in result.stdout and "systemctl --user enable --now" in result.stdout


def test_unit_defaults_to_home_config_dir(
    hermes: Runner, hermes_home: Path, user_env: dict[str, str]
) -> None:
    write_home(hermes_home)
    env = {k: v for k, v in user_env.items() if k != "XDG_CONFIG_HOME"}
    result = hermes("gateway", "install", "--no-start", env={**env, "XDG_CONFIG_HOME": ""})
    assert result.returncode == 0, result.stderr
    unit = Path(user_env["HOME"]) / ".config/systemd/user/hermes-gateway.service"
    assert unit.is_file()
    assert str(unit) in result.stdout


def test_install_without_a_user_manager_prints_the_commands(
    hermes: Runner, hermes_home: Path, user_env: dict[str, str]
) -> None:
    write_home(hermes_home)
    result = hermes("gateway", "install", env=user_env)
    assert result.returncode == 0, result.stderr
    assert unit_path(user_env).is_file()
    out = result.stdout
    assert "No systemd user manager is reachable" in out
    assert "systemctl --user daemon-reload" in out
    assert "systemctl --user enable --now hermes-gateway.service" in out
    assert "loginctl enable-linger" in out
    assert "Traceback" not in result.stderr


def test_second_install_replaces_atomically_and_says_so(
    hermes: Runner, tmp_path: Path, user_env: dict[str, str]
) -> None:
    first, second = tmp_path / "home-one", tmp_path / "home-two"
    write_home(first)
    write_home(second)
    one = hermes("gateway", "install", "--no-start", env={**user_env, "HERMES_HOME": str(first)})
    assert one.returncode == 0 and "wrote" in one.stdout
    same = hermes("gateway", "install", "--no-start", env={**user_env, "HERMES_HOME": str(first)})
    assert same.returncode == 0 and "unchanged" in same.stdout
    two = hermes("gateway", "install", "--no-start", env={**user_env, "HERMES_HOME": str(second)})
    assert two.returncode == 0 and "replaced the existing" in two.stdout
    unit = unit_path(user_env)
    assert f"HERMES_HOME={second}" in unit.read_text()
    assert str(first) not in unit.read_text()
    assert sorted(p.name for p in unit.parent.iterdir()) == ["hermes-gateway.service"]


def test_warns_when_no_platform_is_enabled(
    hermes: Runner, hermes_home: Path, user_env: dict[str, str]
) -> None:
    result = hermes("gateway", "install", "--no-start", env=user_env)
    assert result.returncode == 0
    assert "no platform is enabled" in result.stdout


FAKE_SYSTEMCTL = """#!/bin/sh
# Stand-in for a reachable systemd user manager: records every call.
echo "$*" >> "{log}"
case "$*" in
  "--user show-environment") echo "HOME=/x" ;;
  *"restart"*) [ -n "$FAIL_RESTART" ] && {{ echo "Job failed: see journalctl" >&2; exit 1; }} ;;
esac
exit 0
"""


def fake_systemctl(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(log=log))
    script.chmod(0o755)
    return bin_dir, log


def test_install_and_uninstall_drive_a_reachable_user_manager(
    hermes: Runner, hermes_home: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    write_home(hermes_home)
    bin_dir, log = fake_systemctl(tmp_path)
    env = {**user_env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = hermes("gateway", "install", env=env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        "--user enable hermes-gateway.service",
        "--user restart hermes-gateway.service",
    ]
    assert "enabled and started hermes-gateway.service" in result.stdout
    log.unlink()
    # `enable` links the unit into default.target.wants; uninstall must leave nothing behind.
    wants = unit_path(user_env).parent / "default.target.wants"
    wants.mkdir()
    (wants / "hermes-gateway.service").symlink_to(unit_path(user_env))
    removed = hermes("gateway", "uninstall", env=env)
    assert removed.returncode == 0, removed.stderr
    calls = log.read_text().splitlines()
    assert calls[:2] == ["--user show-environment", "--user disable --now hermes-gateway.service"]
    assert "--user daemon-reload" in calls[2:]
    assert "stopped and disabled" in removed.stdout and "removed" in removed.stdout
    assert not unit_path(user_env).exists()
    assert not (wants / "hermes-gateway.service").is_symlink()


def test_a_failing_systemctl_is_a_clear_error(
    hermes: Runner, hermes_home: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    write_home(hermes_home)
    bin_dir, _log = fake_systemctl(tmp_path)
    env = {**user_env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAIL_RESTART": "1"}
    result = hermes("gateway", "install", env=env)
    assert_clean_failure(result, 1)
    assert "systemctl --user restart hermes-gateway.service" in result.stderr
    assert "Job failed" in result.stderr
    assert unit_path(user_env).is_file()  # Written; the message says so.
    assert str(unit_path(user_env)) in result.stderr


def test_uninstall_twice(hermes: Runner, hermes_home: Path, user_env: dict[str, str]) -> None:
    write_home(hermes_home)
    assert hermes("gateway", "install", "--no-start", env=user_env).returncode == 0
    first = hermes("gateway", "uninstall", env=user_env)
    assert first.returncode == 0, first.stderr
    assert f"removed {unit_path(user_env)}" in first.stdout
    assert not unit_path(user_env).exists()
    second = hermes("gateway", "uninstall", env=user_env)
    assert_clean_failure(second, 1)
    assert "no gateway service is installed" in second.stderr


@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_refused_in_managed_mode(
    hermes: Runner, hermes_home: Path, user_env: dict[str, str], action: str
) -> None:
    write_home(hermes_home)
    result = hermes("gateway", action, env={**user_env, "HERMES_MANAGED": "true"})
    assert_clean_failure(result, 3)
    assert "managed by NixOS" in result.stderr
    assert "services.hermes-agent" in result.stderr
    assert not unit_path(user_env).exists()
    (hermes_home / ".managed").write_text("homebrew\n")
    result = hermes("gateway", action, env=user_env)
    assert_clean_failure(result, 3)
    assert "managed by homebrew" in result.stderr


def test_launchd_plist_round_trips(
    hermes_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "home <&> 'quoted'"
    real.mkdir()
    link = tmp_path / "home-link"
    link.symlink_to(real)
    monkeypatch.setenv("HERMES_HOME", str(link))
    spec = service.current_spec("launchd")
    agent = plistlib.loads(service.launchd_plist(spec))
    assert agent["Label"] == "ai.hermes.gateway"
    assert agent["ProgramArguments"][-3:] == ["gateway", "run", "--replace"]
    assert Path(agent["ProgramArguments"][0]).is_absolute()
    assert agent["EnvironmentVariables"]["HERMES_HOME"] == str(real.resolve())
    path = agent["EnvironmentVariables"]["PATH"].split(":")
    assert "/usr/bin" in path and "/opt/homebrew/bin" in path
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # Restart on failure only.
    assert agent["StandardErrorPath"] == str(real.resolve() / "logs" / "gateway.service.log")
    assert set(agent) <= {
        "Label",
        "ProgramArguments",
        "EnvironmentVariables",
        "WorkingDirectory",
        "RunAtLoad",
        "KeepAlive",
        "ThrottleInterval",
        "ExitTimeOut",
        "ProcessType",
        "StandardOutPath",
        "StandardErrorPath",
    }
    file = service.service_file("launchd")
    assert file == Path.home() / "Library/LaunchAgents/ai.hermes.gateway.plist"


def test_unsupported_platform_is_a_clear_error(hermes_home: Path) -> None:
    with pytest.raises(HermesError) as caught:
        service.install(start=False, platform="win32")
    assert "'win32'" in str(caught.value) and "Linux" in str(caught.value)
    assert "WSL" in str(caught.value)


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_unit_runs_hermes_through_a_nix_profile_link_not_its_store_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store path is garbage-collected after an upgrade; the profile's link follows it."""
    store = tmp_path / "nix" / "store"
    monkeypatch.setattr(service, "NIX_STORE", store)
    in_store = _script(store / "abc123-hermes-agent" / "bin" / "hermes")
    profile_link = tmp_path / "profile" / "bin" / "hermes"
    profile_link.parent.mkdir(parents=True)
    profile_link.symlink_to(in_store)
    monkeypatch.setattr("sys.argv", [str(profile_link), "gateway", "install"])
    assert service.hermes_executable() == [str(profile_link)]
    # Any other link (~/.local/bin/hermes into a checkout's venv) is resolved.
    venv_script = _script(tmp_path / "checkout" / ".venv" / "bin" / "hermes")
    local_link = tmp_path / "local" / "bin" / "hermes"
    local_link.parent.mkdir(parents=True)
    local_link.symlink_to(venv_script)
    monkeypatch.setattr("sys.argv", [str(local_link), "gateway", "install"])
    assert service.hermes_executable() == [str(venv_script.resolve())]
