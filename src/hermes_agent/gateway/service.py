"""`hermes gateway install|uninstall`: the gateway as a systemd user unit or a launchd agent.

The service runs the absolute path of this very ``hermes`` (so a checkout's
venv keeps working when ``~/.local/bin`` is not on the service's PATH) with
``gateway run --replace``, and sets exactly two variables: ``HERMES_HOME``
(resolved, so the service finds the same home whatever directory it starts
in) and ``PATH`` (the venv's ``bin``, the user's current PATH entries that
exist, then the standard system directories, so the terminal tool finds
``git``, ``node`` and friends as it does in the user's shell). Secrets are
never written into the unit: the gateway reads them from ``HERMES_HOME/.env``
when it starts, like every other command.

Linux: ``$XDG_CONFIG_HOME/systemd/user/hermes-gateway.service`` (default
``~/.config``), then ``systemctl --user daemon-reload``, ``enable`` and
``restart`` when a user manager is reachable; otherwise the commands are
printed for the user to run in a login session. macOS:
``~/Library/LaunchAgents/ai.hermes.gateway.plist``, loaded with ``launchctl
bootstrap gui/UID``. A managed installation (NixOS) runs the gateway as its own
service, so both actions are refused there.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hermes_agent import home
from hermes_agent.errors import EXIT_MANAGED, HermesError, UsageError

UNIT_NAME = "hermes-gateway.service"
LAUNCHD_LABEL = "ai.hermes.gateway"
#: systemd's delay before restarting a gateway that failed.
RESTART_SECONDS = 5
#: Directories every service PATH ends with, whatever the user's shell has.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DARWIN_SYSTEM_PATH = (
    "/opt/homebrew/bin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
)
#: How long one systemctl/launchctl call may take before we give up on it.
COMMAND_TIMEOUT = 60.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class ServiceSpec:
    """Everything a service file says, computed once from the running hermes."""

    #: The absolute command line: hermes, then ``gateway run --replace``.
    argv: tuple[str, ...]
    #: HERMES_HOME, absolute and resolved.
    hermes_home: Path
    #: The service's PATH.
    path: str
    #: Seconds the service manager waits for a stopping gateway before killing it.
    stop_timeout: float
    #: Where launchd writes the gateway's stdout/stderr (systemd has the journal).
    log_file: Path
    #: The directory the gateway starts in (the user's home; systemd says ``~``).
    working_directory: Path


def service_kind(platform: str = sys.platform) -> str:
    """``systemd`` on Linux, ``launchd`` on macOS; elsewhere a clear error."""
    if platform.startswith("linux"):
        return "systemd"
    if platform == "darwin":
        return "launchd"
    raise HermesError(
        f"`hermes gateway install` supports Linux (systemd) and macOS (launchd), not "
        f"{platform!r}. Run `hermes gateway run` under your system's own service manager "
        "instead (on Windows: inside WSL, where systemd works)."
    )


def service_file(kind: str, environ: Mapping[str, str] | None = None) -> Path:
    """The unit (systemd) or plist (launchd) path for the current user."""
    env = os.environ if environ is None else environ
    if kind == "launchd":
        return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    config = env.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config and Path(config).is_absolute() else Path.home() / ".config"
    return base / "systemd" / "user" / UNIT_NAME


# --- what the service runs ------------------------------------------------------------

#: Where Nix keeps packages; a path in it disappears once nothing refers to it.
NIX_STORE = Path("/nix/store")


def hermes_executable() -> list[str]:
    """The absolute command that runs this hermes.

    ``sys.argv[0]`` resolved when it is the ``hermes`` script (a symlink in
    ``~/.local/bin`` leads to the checkout's venv), else the ``hermes`` next to
    the interpreter, else the interpreter with ``-m hermes_agent``.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and Path(argv0).name == "hermes":
        found = shutil.which(argv0) if os.sep not in argv0 else argv0
        if found and os.access(found, os.X_OK):
            link = Path(os.path.abspath(found))
            target = link.resolve()
            if target.is_relative_to(NIX_STORE) and not link.is_relative_to(NIX_STORE):
                # A Nix profile's link (`nix profile install`): it follows upgrades, while
                # the store path it points at today is garbage-collected after one.
                return [str(link)]
            return [str(target)]
    beside = venv_bin() / "hermes"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [os.path.abspath(sys.executable), "-m", "hermes_agent"]


def venv_bin() -> Path:
    """The ``bin`` directory of the interpreter's venv (or of the interpreter itself)."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix).absolute() / "bin"
    return Path(os.path.abspath(sys.executable)).parent


def service_path(current: str, first: Path, system: Sequence[str] = SYSTEM_PATH) -> str:
    """``first``, then the absolute entries of ``current`` that exist, then ``system``."""
    entries = [str(first)]
    for entry in current.split(os.pathsep):
        if entry and os.path.isabs(entry) and os.path.isdir(entry):
            entries.append(os.path.normpath(entry))
    entries.extend(system)
    return os.pathsep.join(dict.fromkeys(entries))  # First occurrence wins, order kept.


def current_spec(kind: str) -> ServiceSpec:
    """The service of this hermes and this HERMES_HOME, for ``kind``."""
    system = DARWIN_SYSTEM_PATH if kind == "launchd" else SYSTEM_PATH
    spec = ServiceSpec(
        argv=(*hermes_executable(), "gateway", "run", "--replace"),
        hermes_home=home.hermes_home().resolve(),
        path=service_path(os.environ.get("PATH", ""), venv_bin(), system),
        stop_timeout=_stop_timeout(),
        log_file=home.gateway_service_log_path().resolve(),
        working_directory=Path.home(),
    )
    for value in (*spec.argv, str(spec.hermes_home), spec.path, str(spec.working_directory)):
        if "\n" in value or "\r" in value or "\0" in value:
            raise UsageError(f"cannot write a service for a path with a line break: {value!r}")
    return spec


def _stop_timeout() -> float:
    """gateway.shutdown_timeout plus the grace `hermes gateway stop` gives (45 s by default)."""
    from hermes_agent.config.loader import load_config
    from hermes_agent.gateway.runner import stop_wait_seconds

    try:  # Not interpolated: .env is not loaded here, and this key never uses ${VAR}.
        return stop_wait_seconds(load_config(interpolate=False))
    except HermesError:
        return 45.0  # A broken config.yaml is reported when the gateway starts.


# --- the files ------------------------------------------------------------------------


def _systemd_quote(value: str, *, argument: bool) -> str:
    r"""One word for a unit file: double-quoted, with ``\``, ``"`` and ``%`` escaped.

    In the arguments of ``ExecStart=`` a ``$`` would start a variable, so it is
    doubled there; systemd does not expand (nor unescape) it in the program path.
    """
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if argument:
        text = text.replace("$", "$$")
    return f'"{text}"'


def systemd_unit(spec: ServiceSpec) -> str:
    """The text of ``hermes-gateway.service`` (a systemd user unit)."""
    program, *arguments = spec.argv
    if any(c in program for c in "'\"\\"):
        # systemd refuses such a program path ("Executable name contains special characters").
        raise UsageError(
            f"systemd cannot run a program whose path holds a quote or a backslash: "
            f"{program}; install hermes under a plainer directory"
        )
    exec_start = " ".join(
        [_systemd_quote(program, argument=False)]
        + [_systemd_quote(word, argument=True) for word in arguments]
    )
    home_env = _systemd_quote(f"HERMES_HOME={spec.hermes_home}", argument=False)
    path_env = _systemd_quote(f"PATH={spec.path}", argument=False)
    description = f"hermes agent gateway ({spec.hermes_home})".replace("%", "%%")
    return (
        "# Written by `hermes gateway install`; remove it with `hermes gateway uninstall`.\n"
        "# Secrets are not in this file: the gateway reads them from HERMES_HOME/.env.\n"
        "[Unit]\n"
        f"Description={description}\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        f"Environment={home_env}\n"
        f"Environment={path_env}\n"
        "WorkingDirectory=~\n"  # The user's home, like the launchd agent.
        "Restart=on-failure\n"
        f"RestartSec={RESTART_SECONDS}\n"
        # SIGTERM to the gateway only: it lets running answers (and their commands) finish.
        "KillMode=mixed\n"
        f"TimeoutStopSec={int(spec.stop_timeout)}\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_plist(spec: ServiceSpec) -> bytes:
    """The ``ai.hermes.gateway`` launchd agent (XML property list)."""
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": list(spec.argv),
        "EnvironmentVariables": {"HERMES_HOME": str(spec.hermes_home), "PATH": spec.path},
        "WorkingDirectory": str(spec.working_directory),
        "RunAtLoad": True,
        # Restart after a failure (non-zero exit), not after `hermes gateway stop`.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_SECONDS,
        "ExitTimeOut": int(spec.stop_timeout),
        "ProcessType": "Background",
        "StandardOutPath": str(spec.log_file),
        "StandardErrorPath": str(spec.log_file),
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False)


def render(spec: ServiceSpec, kind: str) -> bytes:
    return launchd_plist(spec) if kind == "launchd" else systemd_unit(spec).encode("utf-8")


# --- talking to the service manager ---------------------------------------------------


def _run(argv: Sequence[str]) -> tuple[int, str]:
    """Run a command; return its status and what it said (stderr, else stdout)."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"`{' '.join(argv)}` did not finish within {COMMAND_TIMEOUT:.0f} s"
    except OSError as exc:
        return 126, f"{argv[0]}: {exc.strerror or exc}"
    said = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return done.returncode, said[-1] if said else ""


def _systemd_reachable() -> bool:
    """Whether ``systemctl --user`` reaches a user manager (a login session, or linger)."""
    if shutil.which("systemctl") is None:
        return False
    code, _ = _run(["systemctl", "--user", "show-environment"])
    return code == 0


def _launchd_domain() -> str:
    return f"gui/{os.getuid()}"


def _launchd_reachable() -> bool:
    if shutil.which("launchctl") is None:
        return False
    code, _ = _run(["launchctl", "print", _launchd_domain()])
    return code == 0


def _check(argv: Sequence[str], written: Path) -> None:
    code, said = _run(argv)
    if code != 0:
        raise HermesError(
            f"`{' '.join(argv)}` failed (exit {code}): {said or 'no message'}. "
            f"{written} is in place; fix the cause and run `hermes gateway install` again"
        )


# --- the actions ----------------------------------------------------------------------


def refuse_if_managed(command: str) -> None:
    """Exit 3 when NixOS (or another manager) owns this installation and its service."""
    from hermes_agent.config.managed import manager

    name = manager()
    if name is None:
        return
    if name == "nixos":
        raise HermesError(
            f"`{command}` is disabled: this installation is managed by NixOS, which runs "
            "the gateway as its own service.\nSet services.hermes-agent.enable = true in "
            "configuration.nix, then run: sudo nixos-rebuild switch",
            EXIT_MANAGED,
        )
    raise HermesError(
        f"`{command}` is disabled: this installation is managed by {name}.\n"
        f"Run the gateway as a service through {name} instead.",
        EXIT_MANAGED,
    )


def install(*, start: bool, platform: str = sys.platform, say: Say = print) -> int:
    """Write the service file (atomically) and, when ``start``, enable and start it."""
    from hermes_agent.fsutil import atomic_write

    refuse_if_managed("hermes gateway install")
    kind = service_kind(platform)
    target = service_file(kind)
    spec = current_spec(kind)
    content = render(spec, kind)
    try:
        previous: bytes | None = target.read_bytes()
    except FileNotFoundError:
        previous = None
    except OSError as exc:
        raise HermesError(f"cannot read {target}: {exc.strerror or exc}") from None
    atomic_write(target, content, mode=0o644)
    if previous is None:
        say(f"wrote {target}")
    elif previous == content:
        say(f"{target} was already installed and is unchanged; wrote it again")
    else:
        say(f"replaced the existing {target}")
    say(f"  runs: {' '.join(spec.argv)}")
    say(f"  HERMES_HOME={spec.hermes_home}")
    _warn_when_nothing_to_serve(say)
    if kind == "launchd":
        return _start_launchd(target, start=start, replaced=previous is not None, say=say)
    return _start_systemd(target, start=start, say=say)


def _warn_when_nothing_to_serve(say: Say) -> None:
    from hermes_agent.config.loader import load_config
    from hermes_agent.gateway.runner import enabled_platforms, has_cron_jobs

    try:
        config = load_config(interpolate=False)
        platforms = enabled_platforms(config)
    except HermesError as exc:
        say(f"warning: the gateway will not start until this is fixed: {exc}")
        return
    if not platforms and not has_cron_jobs(config):
        say(
            "warning: no platform is enabled yet and there are no scheduled jobs, so the "
            "service will fail to start; enable a platform first, e.g. "
            "`hermes config set gateway.platforms.api_server.enabled true`"
        )


def _start_systemd(unit: Path, *, start: bool, say: Say) -> int:
    commands = (
        "systemctl --user daemon-reload",
        f"systemctl --user enable --now {UNIT_NAME}",
    )
    if not start:
        say("not started (--no-start); to start it now and at every login, run:")
        for command in commands:
            say(f"  {command}")
        return 0
    if not _systemd_reachable():
        say(
            "No systemd user manager is reachable from here (no login session, or a "
            "container without systemd), so the service was not started. In a login "
            "session, run:"
        )
        for command in commands:
            say(f"  {command}")
        _linger_hint(say, known_off=False)
        return 0
    _check(["systemctl", "--user", "daemon-reload"], unit)
    _check(["systemctl", "--user", "enable", UNIT_NAME], unit)
    # restart, not start: a reinstall must replace a gateway running the old unit.
    _check(["systemctl", "--user", "restart", UNIT_NAME], unit)
    say(f"enabled and started {UNIT_NAME} (systemd user unit)")
    say(f"  status: systemctl --user status {UNIT_NAME}")
    say(f"  logs:   journalctl --user -u {UNIT_NAME} -f  (and {home.gateway_log_path()})")
    _linger_hint(say, known_off=True)
    return 0


def _linger_hint(say: Say, *, known_off: bool) -> None:
    """Tell how to keep the user manager running without a login session."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "$USER"
    if known_off and shutil.which("loginctl") is not None:
        code, said = _run(["loginctl", "show-user", user, "--property=Linger", "--value"])
        if code == 0 and said.strip() == "yes":
            return
    say(
        "The user manager stops when you log out, and the gateway with it. To keep it "
        "running without a login session (and start it at boot), run once:"
    )
    say(f"  loginctl enable-linger {user}")


def _start_launchd(plist: Path, *, start: bool, replaced: bool, say: Say) -> int:
    domain = _launchd_domain()
    commands = (
        f"launchctl bootout {domain}/{LAUNCHD_LABEL}",
        f"launchctl bootstrap {domain} {plist}",
    )
    if not start:
        say("not started (--no-start); to load it now (and at every login), run:")
        say(f"  {commands[1]}")
        return 0
    if not _launchd_reachable():
        say(f"launchd's {domain} domain is not reachable from here (no GUI login?). Run:")
        for command in commands:
            say(f"  {command}")
        return 0
    if replaced:  # bootstrap refuses a label that is loaded: unload the old agent first.
        _run(["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"])
    _check(["launchctl", "bootstrap", domain, str(plist)], plist)
    say(f"loaded and started {LAUNCHD_LABEL} (launchd agent; it starts at every login)")
    say(f"  status: launchctl print {domain}/{LAUNCHD_LABEL}")
    say(f"  logs:   {home.gateway_log_path()}")
    return 0


def uninstall(*, platform: str = sys.platform, say: Say = print) -> int:
    """Stop and disable the service, then remove its file; exit 1 when none is installed."""
    refuse_if_managed("hermes gateway uninstall")
    kind = service_kind(platform)
    target = service_file(kind)
    if not target.exists():
        raise HermesError(f"no gateway service is installed (no {target}); nothing to remove")
    if kind == "launchd":
        if _launchd_reachable():
            code, _ = _run(["launchctl", "bootout", f"{_launchd_domain()}/{LAUNCHD_LABEL}"])
            say(f"stopped and unloaded {LAUNCHD_LABEL}" if code == 0 else "it was not loaded")
        _remove(target)
        say(f"removed {target}")
        return 0
    reachable = _systemd_reachable()
    if reachable:
        code, said = _run(["systemctl", "--user", "disable", "--now", UNIT_NAME])
        if code == 0:
            say(f"stopped and disabled {UNIT_NAME}")
        else:
            say(f"warning: `systemctl --user disable --now {UNIT_NAME}` failed: {said}")
    else:
        say(
            "No systemd user manager is reachable from here: if the gateway is running "
            f"under it, stop it in a login session with `systemctl --user stop {UNIT_NAME}`"
        )
    # `enable` made this link; without a reachable manager nobody else removes it.
    wants = target.parent / "default.target.wants" / UNIT_NAME
    if wants.is_symlink():
        _remove(wants)
    _remove(target)
    say(f"removed {target}")
    if reachable:
        _run(["systemctl", "--user", "daemon-reload"])
        _run(["systemctl", "--user", "reset-failed", UNIT_NAME])
    return 0


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HermesError(f"cannot remove {path}: {exc.strerror or exc}") from None
