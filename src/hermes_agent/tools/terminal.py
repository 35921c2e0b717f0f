"""The ``terminal`` toolset: run shell commands, in the foreground or the background.

``terminal`` runs one command with ``bash -c`` in the workspace (``ctx.cwd``,
from ``terminal.cwd``) and returns its standard output and error interleaved
as they were written, the exit code and the duration. Output longer than
``terminal.max_output_chars`` keeps its head and its tail with a note of what
was left out. A command still running after ``terminal.timeout`` seconds is
stopped: its whole process group gets SIGTERM, then SIGKILL, and the result
says so. ``background: true`` starts the command and returns an id at once;
the ``process`` tool lists, polls, reads, waits for and kills those
processes. Every command passes :func:`hermes_agent.safety.gate.approve_command`
before anything starts.

Backends (``terminal.backend``):

- ``local``: ``bash -c COMMAND`` here, in a new session (its own process group),
  stdin from /dev/null, hermes' own secrets (the names in ``HERMES_HOME/.env``)
  removed from its environment.
- ``ssh``: the ``ssh`` client with ``BatchMode=yes`` (never a password prompt)
  runs the command with bash on ``terminal.ssh.host`` (in ``terminal.ssh.cwd``),
  under a small remote watchdog (:func:`remote_script`) that kills the remote
  process group when the connection ends, so a timeout, an interrupt or a
  kill stops the remote command too.
- ``docker``: ``docker exec`` into ``terminal.docker.container``, or a fresh
  ``docker run --rm`` of ``terminal.docker.image`` with the workspace mounted
  at ``/workspace``. The command lines are built by :func:`docker_argv`
  (unit-tested); the backend itself is not tested here, because the test
  machines have the docker client but no Docker engine.

Background processes belong to the session: call :func:`cleanup` with the
session's ``ToolContext.state`` when the session ends (an ``atexit`` hook
kills whatever is left when hermes exits).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent.tools.registry import Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config
    from hermes_agent.safety.spawner import Child

#: Seconds between SIGTERM and SIGKILL when a process group is stopped.
KILL_GRACE = 2.0
#: After the shell exits, how long to wait for children still holding the output open.
DRAIN_GRACE = 0.5
STATE_KEY = "terminal.processes"
DIR_KEY = "terminal.dir"
#: ``ToolContext.state`` key: a callable that hears a foreground command's output live.
OUTPUT_KEY = "terminal.on_output"
#: ``ToolContext.state`` key: ``async (command, timeout, max_chars) -> (output, exit code,
#: timed out)`` that runs foreground commands elsewhere (ACP with ``acp.client_terminal``).
RUNNER_KEY = "terminal.runner"
DOCKER_WORKDIR = "/workspace"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][A-Za-z0-9]")


# --- command lines -----------------------------------------------------------------------


def local_argv(command: str) -> list[str]:
    return ["bash", "-c", command]


def ssh_argv(
    command: str,
    *,
    host: str,
    user: str = "",
    port: int = 22,
    key_file: str = "",
    known_hosts_file: str = "",
    remote_cwd: str = "",
    connect_timeout: int = 15,
) -> list[str]:
    """The ``ssh`` command line that runs ``command`` with bash on ``host``.

    BatchMode makes a missing key or an unknown host fail at once instead of
    prompting; a host seen for the first time is accepted and remembered
    (``StrictHostKeyChecking=accept-new``), a changed host key is refused.
    """
    argv = [
        "ssh",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-o",
        "LogLevel=ERROR",
        "-p",
        str(port),
    ]
    if known_hosts_file:
        argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(known_hosts_file)}"]
    if key_file:
        argv += ["-i", os.path.expanduser(key_file), "-o", "IdentitiesOnly=yes"]
    if user:
        argv += ["-l", user]
    return [*argv, "--", host, remote_script(command, remote_cwd)]


def remote_script(command: str, remote_cwd: str = "") -> str:
    """What the ssh backend asks the remote side to run: ``command`` with a watchdog.

    Without a terminal, sshd sends no hang-up when the connection drops, so a
    command would outlive a timeout or an interrupt. Here the command runs in a
    session of its own (``setsid``, when the host has it) with stdin from
    /dev/null, and a watcher reads the connection's stdin, which hermes keeps
    open: when it ends (the ssh client was stopped), the watcher kills the
    command's whole process group. The exit status is the command's.
    """
    inner = f"bash -c {shlex.quote(command)}"
    script = (
        "exec 3<&0; "
        "if command -v setsid >/dev/null 2>&1; then s=setsid; else s=; fi; "
        f"$s {inner} </dev/null & p=$!; "
        "( exec >/dev/null 2>&1; cat <&3; kill -TERM -- -$p || kill -TERM $p; sleep 2; "
        "kill -KILL -- -$p || kill -KILL $p ) & w=$!; "
        "wait $p; r=$?; kill $w 2>/dev/null; exit $r"
    )
    if remote_cwd:
        script = f"cd -- {shlex.quote(remote_cwd)} || exit 1; {script}"
    # The login shell may be sh, zsh or fish: let bash read the script.
    return f"bash -c {shlex.quote(script)}"


def docker_argv(
    command: str,
    *,
    image: str = "",
    container: str = "",
    cwd: str = "",
    name: str = "",
    env: dict[str, str] | None = None,
) -> list[str]:
    """The ``docker`` command line that runs ``command`` with bash in a container.

    With ``container``: ``docker exec`` into that running container, in
    ``cwd`` if given. Otherwise ``docker run --rm`` of ``image`` with the
    workspace ``cwd`` mounted at /workspace (the working directory), an init
    process to reap children, and ``name`` so that a timeout can remove it.
    """
    env_args: list[str] = []
    for key, value in (env or {}).items():
        env_args += ["-e", f"{key}={value}"]
    if container:
        argv = ["docker", "exec", "-i"]
        if cwd:
            argv += ["-w", cwd]
        return [*argv, *env_args, container, "bash", "-c", command]
    if not image:
        raise ToolError("terminal.docker.image or terminal.docker.container must be set")
    argv = ["docker", "run", "--rm", "-i", "--init"]
    if name:
        argv += ["--name", name]
    if cwd:
        argv += ["-v", f"{cwd}:{DOCKER_WORKDIR}", "-w", DOCKER_WORKDIR]
    return [*argv, *env_args, image, "bash", "-c", command]


@dataclass
class Launch:
    """How to start one command: the argv, where, with which environment."""

    argv: list[str]
    cwd: str | None
    env: dict[str, str]
    #: A docker container to remove when the command is stopped.
    container_name: str = ""
    #: Give the command a stdin pipe that stays open while it runs (the ssh
    #: backend's remote watchdog stops the command when it closes).
    hold_stdin: bool = False
    #: The Landlock ruleset that confines it (started through the spawner), or None.
    ruleset: Any = None
    #: Started through the spawner with its seccomp filter (no new AF_UNIX sockets).
    deny_unix_sockets: bool = False
    #: Started through the spawner with an empty capability bounding set.
    drop_capabilities: bool = False

    @property
    def spawned(self) -> bool:
        """Started by the sandbox's spawner rather than by hermes itself."""
        return self.ruleset is not None or self.deny_unix_sockets

    def spawn_args(self) -> dict[str, Any]:
        return {
            "ruleset": self.ruleset.fileno() if self.ruleset is not None else -1,
            "deny_unix_sockets": self.deny_unix_sockets,
            "drop_capabilities": self.drop_capabilities,
        }

    #: Which sandbox confines it ("" when none does).
    sandbox: str = ""


def child_env(pass_env: Iterable[str] = ()) -> dict[str, str]:
    """The environment for commands: ours, minus every secret hermes holds.

    Removed: the names in ``HERMES_HOME/.env`` (always), and variables whose
    names look like credentials (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``,
    ``*_PASSWORD``) unless ``sandbox.pass_env`` lists them: a provider key
    exported in the user's shell is hermes' secret too.
    """
    from hermes_agent import home
    from hermes_agent.config import envfile
    from hermes_agent.redact import is_secret_name

    env = dict(os.environ)
    try:
        names = envfile.read_env_file(home.env_path()).values
    except Exception:  # An unreadable .env must not stop the terminal; nothing to drop.
        names = {}
    for name in names:
        env.pop(name, None)
    keep = set(pass_env) - set(names)
    for name in [n for n in env if is_secret_name(n) and n not in keep]:
        del env[name]
    env.setdefault("PAGER", "cat")
    env.setdefault("GIT_PAGER", "cat")
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def confined(argv: list[str], cwd: str, ctx: ToolContext) -> Launch:
    """A local launch of ``argv`` in ``cwd``, inside the kernel sandbox when it is on.

    The one place where a local process of the agent's gets its confinement:
    the terminal tool, background processes, cron jobs and delegated agents
    all start their commands here.
    """
    from hermes_agent.safety import sandbox

    env = child_env(str(n) for n in (ctx.config.get("sandbox.pass_env") or ()))
    try:
        confinement = sandbox.confine(ctx.config, cwd, ctx.state)
    except sandbox.SandboxError as exc:
        raise ToolError(f"the command was not run: {exc}") from None
    if confinement is None:
        return Launch(argv, cwd, env)
    env.update(confinement.env)
    os.makedirs(confinement.env.get("XDG_CACHE_HOME", ""), mode=0o700, exist_ok=True)
    return Launch(
        [*confinement.prefix, *argv],
        cwd,
        env,
        ruleset=confinement.ruleset,
        deny_unix_sockets=confinement.deny_unix_sockets,
        drop_capabilities=confinement.drop_capabilities,
        sandbox=confinement.backend,
    )


def plan(command: str, ctx: ToolContext) -> Launch:
    """Build the launch of ``command`` for the configured backend."""
    config = ctx.config
    backend = str(config.get("terminal.backend") or "local")
    cwd = ctx.cwd
    if backend == "local":
        if not os.path.isdir(cwd):
            raise ToolError(f"the workspace {cwd} does not exist (terminal.cwd)")
        if shutil.which("bash") is None:
            raise ToolError("bash is not installed on this machine")
        return confined(local_argv(command), cwd, ctx)
    local_cwd = cwd if os.path.isdir(cwd) else None
    if backend == "ssh":
        host = str(config.get("terminal.ssh.host") or "")
        if not host:
            raise ToolError("terminal.backend is ssh but terminal.ssh.host is not set")
        argv = ssh_argv(
            command,
            host=host,
            user=str(config.get("terminal.ssh.user") or ""),
            port=int(config.get("terminal.ssh.port") or 22),
            key_file=str(config.get("terminal.ssh.key_file") or ""),
            known_hosts_file=str(config.get("terminal.ssh.known_hosts_file") or ""),
            remote_cwd=str(config.get("terminal.ssh.cwd") or ""),
        )
        return Launch(argv, local_cwd, child_env(), hold_stdin=True)
    if backend == "docker":
        container = str(config.get("terminal.docker.container") or "")
        name = "" if container else f"hermes-{uuid.uuid4().hex[:12]}"
        argv = docker_argv(
            command,
            image=str(config.get("terminal.docker.image") or ""),
            container=container,
            cwd="" if container else cwd,
            name=name,
        )
        return Launch(argv, local_cwd, child_env(), container_name=name)
    raise ToolError(f"unknown terminal.backend {backend!r}; use local, ssh or docker")


# --- output ----------------------------------------------------------------------------


class Capture:
    """Keeps the first and the last ``limit // 2`` bytes of a stream, counting the rest."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def omitted(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        head = clean(bytes(self.head))
        if not self.omitted:
            return head + clean(bytes(self.tail))
        return (
            head + f"\n[... {self.omitted:,} bytes of output left out ({self.total:,} in all); the "
            "start and the end are shown. Send the output to a file and read parts of it, or "
            "filter it with grep/head/tail ...]\n" + clean(bytes(self.tail))
        )


def clean(data: bytes) -> str:
    """Bytes of terminal output as text: invalid UTF-8 replaced, colour codes removed."""
    return _ANSI.sub("", data.decode("utf-8", "replace"))


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _remove_container(name: str) -> None:
    if name and shutil.which("docker"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["docker", "rm", "-f", name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=20,
                check=False,
            )


@dataclass
class RunResult:
    output: str
    exit_code: int | None
    seconds: float
    timed_out: bool = False
    #: Processes the command left behind holding its output were stopped.
    strays_stopped: bool = False


async def run(
    launch: Launch,
    timeout: float,
    max_chars: int,
    on_output: Callable[[str], None] | None = None,
) -> RunResult:
    """Run a launch to the end or the timeout; stop its whole process group either way.

    ``on_output`` hears the output as it comes (an editor shows it live); a
    failing listener never disturbs the command.
    """
    started = time.monotonic()
    proc: asyncio.subprocess.Process | _ConfinedProcess
    try:
        if launch.spawned:
            proc = await _ConfinedProcess.start(launch)
        else:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=subprocess.PIPE if launch.hold_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=launch.cwd,
                env=launch.env,
                start_new_session=True,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError(_start_error(launch, exc)) from None
    capture = Capture(max_chars)
    assert proc.stdout is not None
    stdout = proc.stdout

    async def pump() -> None:
        while chunk := await stdout.read(65536):
            capture.add(chunk)
            if on_output is not None:
                with contextlib.suppress(Exception):
                    on_output(clean(chunk))

    reader = asyncio.ensure_future(pump())
    timed_out = False
    strays = False
    try:
        if not await _wait_exit(proc, timeout):
            timed_out = True
            await _stop(proc, launch)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives as its awaitable finishes, and the interrupted turn would go on.
        try:
            async with asyncio.timeout(DRAIN_GRACE):
                await asyncio.shield(reader)
        except TimeoutError:
            # Children the command left running still hold the output pipe open.
            strays = True
            _kill_group(proc.pid, signal.SIGKILL)
            try:
                async with asyncio.timeout(KILL_GRACE):
                    await asyncio.shield(reader)
            except TimeoutError:  # They left the process group (setsid): stop listening.
                reader.cancel()
                _close_transport(proc)
        if reader.done() and not reader.cancelled():
            async with asyncio.timeout(KILL_GRACE):
                await proc.wait()  # Reap; the pipe is closed.
    except asyncio.CancelledError:
        # The user interrupted the turn: the command must not outlive it.
        await asyncio.shield(_stop(proc, launch))
        reader.cancel()
        _close_transport(proc)
        raise
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
    return RunResult(capture.text(), proc.returncode, time.monotonic() - started, timed_out, strays)


def _start_error(launch: Launch, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"could not start {launch.argv[0]}: {exc.strerror or exc}"
    return f"could not start {launch.argv[0]}: {exc}"


class _ConfinedProcess:
    """A command started by the sandbox's spawner, with the asyncio Process API run() uses."""

    def __init__(self, child: Any, reader: asyncio.StreamReader, transport: Any) -> None:
        self.child = child
        self.pid: int = child.pid
        self.stdout = reader
        self.stdin: asyncio.StreamWriter | None = None
        self._transport = transport

    @property
    def returncode(self) -> int | None:
        code: int | None = self.child.returncode
        return code

    async def wait(self) -> int:
        code: int = await self.child.wait_async()
        return code

    @classmethod
    async def start(cls, launch: Launch) -> _ConfinedProcess:
        from hermes_agent.safety import spawner

        read_end, write_end = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            child = await spawner.spawn_async(
                launch.argv,
                launch.cwd or os.getcwd(),
                launch.env,
                stdin=devnull,
                stdout=write_end,
                stderr=write_end,
                **launch.spawn_args(),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            os.close(devnull)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 16, loop=loop)
        pipe = os.fdopen(read_end, "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
            )
        except BaseException:
            # Interrupted right after the start (the user cancelled the turn): nobody
            # holds the command yet, so it must not run on.
            _kill_group(child.pid, signal.SIGKILL)
            pipe.close()
            raise
        return cls(child, reader, transport)


async def _wait_exit(proc: asyncio.subprocess.Process | _ConfinedProcess, seconds: float) -> bool:
    """Wait until the process itself has ended; False if it still runs after ``seconds``.

    ``Process.wait()`` is not enough: on Python 3.11 it only returns once the
    output pipe is closed too, and a child left running in the background
    (``sleep 300 &``) keeps it open after the shell has exited.
    """
    deadline = time.monotonic() + seconds
    delay = 0.002
    while proc.returncode is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    return True


def _close_transport(proc: asyncio.subprocess.Process | _ConfinedProcess) -> None:
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


async def _stop(proc: asyncio.subprocess.Process | _ConfinedProcess, launch: Launch) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # The remote watchdog of the ssh backend stops the command.
    _kill_group(proc.pid, signal.SIGTERM)
    if not await _wait_exit(proc, KILL_GRACE):
        _kill_group(proc.pid, signal.SIGKILL)
        await _wait_exit(proc, KILL_GRACE)
    _kill_group(proc.pid, signal.SIGKILL)  # Stragglers that ignored SIGTERM.
    if launch.container_name:
        await asyncio.to_thread(_remove_container, launch.container_name)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


# --- background processes --------------------------------------------------------------


@dataclass
class Background:
    id: str
    command: str
    popen: subprocess.Popen[bytes] | Child
    log: Path
    started: float
    launch: Launch
    offset: int = 0
    ended: float | None = None
    killed: bool = False

    def status(self) -> str:
        code = self.popen.poll()
        now = time.monotonic()
        if code is None:
            return f"running (pid {self.popen.pid}, {now - self.started:.1f} s)"
        if self.ended is None:
            self.ended = now
        how = describe_exit(code)
        if self.killed:
            how = f"stopped by the process tool ({how})"
        return f"{how} after {self.ended - self.started:.1f} s"


#: Every live background process of this hermes process, for the exit hook.
_LIVE: dict[int, Background] = {}
_hook_installed = False


def _kill_everything() -> None:
    """At exit: every process the agent started, gone; then what they changed, put back."""
    with contextlib.suppress(Exception):
        from hermes_agent.safety import spawner

        spawner.kill_all()
    for proc in list(_LIVE.values()):
        if proc.popen.stdin is not None:
            with contextlib.suppress(OSError):
                proc.popen.stdin.close()
        if proc.popen.poll() is None:
            _kill_group(proc.popen.pid, signal.SIGKILL)
        _remove_container(proc.launch.container_name)
    _LIVE.clear()
    for known in list(_AFTERCARE.values()):
        with contextlib.suppress(Exception):
            from hermes_agent.safety import aftercare as care

            care.repair(known[1], known[0])
            care.restore_modes(known[2])
    _AFTERCARE.clear()


def _install_exit_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        atexit.register(_kill_everything)
        _hook_installed = True


def _processes(ctx_state: dict[str, Any]) -> dict[str, Background]:
    procs: dict[str, Background] = ctx_state.setdefault(STATE_KEY, {})
    return procs


def _log_dir(ctx_state: dict[str, Any]) -> Path:
    existing = ctx_state.get(DIR_KEY)
    if existing and Path(existing).is_dir():
        return Path(existing)
    path = Path(tempfile.mkdtemp(prefix="hermes-bg-"))  # 0700: output may hold secrets
    ctx_state[DIR_KEY] = str(path)
    return path


def start_background(command: str, launch: Launch, ctx: ToolContext) -> Background:
    procs = _processes(ctx.state)
    number = len(procs) + 1
    ident = f"bg{number}"
    while ident in procs:
        number += 1
        ident = f"bg{number}"
    log = _log_dir(ctx.state) / f"{ident}.log"
    # A fresh file, never followed through a link (the log directory is private, but a
    # command run unconfined by the user's choice could have left one there).
    with contextlib.suppress(FileNotFoundError):
        log.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(log, flags, 0o600)
    popen: subprocess.Popen[bytes] | Child
    try:
        if launch.spawned:
            from hermes_agent.safety import spawner

            devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                popen = spawner.spawn(
                    launch.argv,
                    launch.cwd or os.getcwd(),
                    launch.env,
                    stdin=devnull,
                    stdout=fd,
                    stderr=fd,
                    **launch.spawn_args(),
                )
            finally:
                os.close(devnull)
        else:
            popen = subprocess.Popen(
                launch.argv,
                stdin=subprocess.PIPE if launch.hold_stdin else subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                cwd=launch.cwd,
                env=launch.env,
                start_new_session=True,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError(_start_error(launch, exc)) from None
    finally:
        os.close(fd)
    proc = Background(ident, command, popen, log, time.monotonic(), launch)
    procs[ident] = proc
    _LIVE[popen.pid] = proc
    _install_exit_hook()
    return proc


def _read_log(proc: Background, start: int, max_chars: int) -> tuple[str, int]:
    """The log from byte ``start``, head and tail kept; returns the text and the end."""
    capture = Capture(max_chars)
    end = start
    with contextlib.suppress(FileNotFoundError), open(proc.log, "rb") as handle:
        handle.seek(start)
        while chunk := handle.read(1 << 16):
            capture.add(chunk)
            end += len(chunk)
    return capture.text(), end


def stop_background(proc: Background) -> bool:
    """Stop a background process and its group; True if it was still running.

    Whether it ran is decided before anything is done to it: closing the ssh
    backend's stdin alone makes the remote watchdog end the command, and the
    local ssh can exit (143) before a later look, which then took the stop
    for an exit of its own.
    """
    running = proc.popen.poll() is None
    if running:
        proc.killed = True
    if proc.popen.stdin is not None:
        with contextlib.suppress(OSError):
            proc.popen.stdin.close()
    if proc.popen.poll() is None:
        _kill_group(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            _kill_group(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
    _kill_group(proc.popen.pid, signal.SIGKILL)
    _remove_container(proc.launch.container_name)
    _LIVE.pop(proc.popen.pid, None)
    return running


def cleanup(state: dict[str, Any]) -> int:
    """Stop every background process of a session and delete their logs.

    Call it with the session's ``ToolContext.state`` when the session ends
    (leaving the chat, /new, /resume, the end of a one-shot run, a gateway
    session that closes). Returns how many processes were still running.
    """
    procs = _processes(state)
    running = 0
    for proc in list(procs.values()):
        running += stop_background(proc)
    procs.clear()
    known = state.pop(AFTERCARE_KEY, None)
    if known is not None:  # What the processes just stopped did last.
        from hermes_agent.safety import aftercare as care

        care.repair(known[1], known[0])
        care.restore_modes(known[2])
    directory = state.pop(DIR_KEY, None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
    from hermes_agent.safety import sandbox

    sandbox.cleanup(state)
    return running


# --- the tools --------------------------------------------------------------------------


def _limits(ctx: ToolContext) -> tuple[int, int]:
    timeout = int(ctx.config.get("terminal.timeout") or 180)
    max_chars = int(ctx.config.get("terminal.max_output_chars") or 20000)
    return timeout, max_chars


AFTERCARE_KEY = "terminal.aftercare"
#: The last aftercare state of every workspace, for the exit hook.
_AFTERCARE: dict[str, Any] = {}


def aftercare(ctx: ToolContext) -> list[str]:
    """Undo what the kernel cannot stop: git program hooks, HERMES_HOME's modes.

    Compares the workspace's repositories with how they were after the last
    command of this session (see :mod:`hermes_agent.safety.aftercare`), puts
    back what a command must not change, and remembers the result.
    """
    if str(ctx.config.get("terminal.backend") or "local") != "local":
        return []
    from hermes_agent.safety import aftercare as care

    undone: list[str] = []
    known = ctx.state.get(AFTERCARE_KEY)
    if known is not None:
        fixed, now = care.restore_modes(known[2])
        undone += fixed
        if known[0] == ctx.cwd:
            undone += care.repair(known[1], ctx.cwd)
    else:
        now = care.modes()
    ctx.state[AFTERCARE_KEY] = (ctx.cwd, care.snapshot(ctx.cwd), now)
    # Kept past the session's end: a daemon it left can act until hermes exits.
    _AFTERCARE[ctx.cwd] = ctx.state[AFTERCARE_KEY]
    _install_exit_hook()
    return undone


def rebaseline(ctx: ToolContext) -> None:
    """Take the workspace as it is now as the state to compare with (a write the user
    approved, such as a git hook through the file tools, is not undone)."""
    if AFTERCARE_KEY not in ctx.state:
        return
    from hermes_agent.safety import aftercare as care

    known = ctx.state[AFTERCARE_KEY]
    ctx.state[AFTERCARE_KEY] = (ctx.cwd, care.snapshot(ctx.cwd), known[2])
    _AFTERCARE[ctx.cwd] = ctx.state[AFTERCARE_KEY]


def _undone_note(undone: list[str]) -> str:
    if not undone:
        return ""
    return (
        "\n[hermes undid changes a command must not make (they would run programs or open "
        "files outside the sandbox): " + "; ".join(undone) + "]"
    )


async def _run_elsewhere(runner: Any, command: str, timeout: int, max_chars: int) -> str:
    """A foreground command run by ``terminal.runner`` (an editor's own terminal, which
    the user opted into with ``acp.client_terminal``) after the same approval gate."""
    output, code, timed_out = await runner(command, timeout, max_chars)
    output = clean(output.encode("utf-8", "replace"))[-max_chars:]
    if timed_out:
        raise ToolError(f"timed out after {timeout} s: the command was stopped. Output:\n{output}")
    if output and not output.endswith("\n"):
        output += "\n"
    footer = f"[{describe_exit(code)} · in the editor's terminal]"
    return f"{output}{footer}" if output else f"(no output)\n{footer}"


async def terminal(args: dict[str, Any], ctx: ToolContext) -> str:
    command = str(args["command"])
    if not command.strip():
        raise ToolError("the command is empty")
    background = bool(args.get("background", False))
    timeout, max_chars = _limits(ctx)
    if "timeout" in args:
        timeout = min(timeout, int(args["timeout"]))
    # Imported here: the classifier is large, and a session that never runs a command
    # (or a chat prompt that is still starting) should not pay for loading it.
    from hermes_agent.safety.gate import approve_command

    await approve_command(command, ctx, purpose="background" if background else "terminal")
    from hermes_agent import checkpoints

    # Before the launch is planned, so that the sandbox already hides the checkpoint.
    note = await checkpoints.before_command(ctx, command)
    runner = ctx.state.get(RUNNER_KEY)
    if runner is not None and not background:
        return await _run_elsewhere(runner, command, timeout, max_chars) + note
    launch = plan(command, ctx)
    # The last look (after the previous command) still holds unless a background
    # process ran since: look again only then, or for the first time.
    running = any(p.popen.poll() is None for p in _processes(ctx.state).values())
    undone = aftercare(ctx) if running or AFTERCARE_KEY not in ctx.state else []
    if background:
        proc = start_background(command, launch, ctx)
        return (
            f"started background process {proc.id} (pid {proc.popen.pid}). Use the process "
            f"tool with id {proc.id!r}: poll for new output, wait for it to end, or kill it. "
            "It is stopped when the session ends." + _undone_note(undone) + note
        )
    result = await run(launch, timeout, max_chars, on_output=ctx.state.get(OUTPUT_KEY))
    undone += aftercare(ctx)
    if result.timed_out:
        raise ToolError(
            f"timed out after {timeout} s: the command was stopped (its process group was "
            f"killed). Output until then:\n{result.output}\n[For commands that run long, use "
            "background=true and the process tool.]"
        )
    footer = f"[{describe_exit(result.exit_code)} · {result.seconds:.1f} s]"
    if result.strays_stopped:
        footer += (
            "\n[processes the command left running in the background were stopped; "
            "use background=true to keep a process running]"
        )
    footer += _undone_note(undone) + note
    output = result.output
    if output and not output.endswith("\n"):
        output += "\n"
    return f"{output}{footer}" if output else f"(no output)\n{footer}"


async def process(args: dict[str, Any], ctx: ToolContext) -> str:
    text = await _process(args, ctx)
    return text + _undone_note(aftercare(ctx))


async def _process(args: dict[str, Any], ctx: ToolContext) -> str:
    action = str(args["action"])
    procs = _processes(ctx.state)
    _, max_chars = _limits(ctx)
    if action == "list":
        if not procs:
            return "no background processes in this session"
        return "\n".join(f"{p.id}: {p.status()} · {_short(p.command)}" for p in procs.values())
    ident = args.get("id")
    if not ident:
        raise ToolError(f"action {action!r} needs the id of a background process")
    proc = procs.get(str(ident))
    if proc is None:
        known = ", ".join(procs) or "none"
        raise ToolError(f"no background process {ident!r} in this session (known: {known})")
    if action == "kill":
        was_running = await asyncio.to_thread(stop_background, proc)
        text, proc.offset = _read_log(proc, proc.offset, max_chars)
        head = (
            f"{proc.id}: {proc.status()}"
            if was_running
            else f"{proc.id} had already ended: {proc.status()}"
        )
        return head + (f"\nlast output:\n{text}" if text else "")
    if action == "wait":
        limit = float(args.get("timeout", _limits(ctx)[0]))
        deadline = time.monotonic() + limit
        while proc.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    if action == "read":
        text, _ = _read_log(proc, 0, max_chars)
    else:  # poll, wait: what is new since the last look
        text, proc.offset = _read_log(proc, proc.offset, max_chars)
    status = proc.status()
    if action == "wait" and proc.popen.poll() is None:
        status = f"still {status} after waiting {limit:g} s"
    body = text if text else "(no new output)" if action != "read" else "(no output yet)"
    return f"{proc.id}: {status}\n{body}"


def _short(command: str, limit: int = 80) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _unavailable(config: Config) -> str | None:
    backend = config.get("terminal.backend") or "local"
    if backend == "local" and shutil.which("bash") is None:
        return "bash is not installed"
    if backend == "ssh":
        if not config.get("terminal.ssh.host"):
            return "terminal.backend is ssh but terminal.ssh.host is not set"
        if shutil.which("ssh") is None:
            return "the ssh client is not installed"
    if backend == "docker":
        if shutil.which("docker") is None:
            return "the docker client is not installed"
        if not (config.get("terminal.docker.image") or config.get("terminal.docker.container")):
            return "terminal.docker.image or terminal.docker.container must be set"
    return None


TOOLS = [
    Tool(
        name="terminal",
        toolset="terminal",
        description=(
            "Run a shell command with bash in the workspace and return its output (stdout and "
            "stderr together), exit code and duration. Each call starts fresh in the "
            "workspace: `cd` does not carry over, chain with `&&`. Commands are stopped at "
            "the timeout (terminal.timeout); set background=true for servers, watchers and "
            "long builds, then use the `process` tool. Stdin is empty: pass flags such as -y "
            "instead of expecting prompts. Commands that could do damage need the user's "
            "approval; some are refused outright."
        ),
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "minLength": 1, "description": "the bash command"},
                "background": {
                    "type": "boolean",
                    "description": "start it in the background and return an id at once",
                },
                "timeout": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "seconds before it is stopped (at most terminal.timeout)",
                },
            },
            "required": ["command"],
            "additionalProperties": False,
        },
        handler=terminal,
        read_only=False,
        parallel_safe=False,
        unavailable=_unavailable,
    ),
    Tool(
        name="process",
        toolset="terminal",
        description=(
            "Manage background processes started with terminal(background=true): `list` them; "
            "`poll` (status and output new since the last look); `read` (all output so far); "
            "`wait` (until it ends or `timeout` seconds pass, then new output); `kill` (stop "
            "its whole process group). All of them are stopped when the session ends."
        ),
        parameters={
            "type": "object",
            "properties": {
                "action": {"enum": ["list", "poll", "read", "wait", "kill"]},
                "id": {"type": "string", "description": "the id terminal returned, e.g. bg1"},
                "timeout": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 3600,
                    "description": "for wait: the most seconds to wait",
                },
            },
            "required": ["action"],
            "additionalProperties": False,
        },
        handler=process,
        read_only=False,
        parallel_safe=False,
    ),
]
