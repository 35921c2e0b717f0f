"""Where a command runs: kernel confinement of every process the agent starts.

The classifier decides whether to *ask*; this module decides what a process
can *touch*, and a command cannot talk its way past it, whatever its spelling.
Every command the terminal tool starts (foreground, background, from cron
jobs and from delegated agents alike) is confined before it executes:

- **writable**: the workspace (``terminal.cwd``), a private temp directory
  for the session (``$TMPDIR``), the directories listed in
  ``sandbox.writable``, and harmless devices (``/dev/null``...). Everything
  else is read-only, in particular all of ``HERMES_HOME``, hermes' own code
  and the Python environment it runs in, shell start-up files, ``~/.ssh``,
  systemd user units and autostart entries (see :mod:`.places`). Those stay
  read-only even when they lie *inside* a writable directory (a workspace of
  ``~``, or a ``sandbox.writable`` entry above them).
- **unreadable**: hermes' secrets (``.env``, ``auth.json``, ``mcp-tokens/``)
  and the credential stores :mod:`.places` knows (SSH private keys,
  ``~/.aws/credentials``...), unless ``files.allow_secret_paths`` lets the
  user's own credential stores through.
- **other processes**: a confined process cannot signal, ptrace or read the
  memory or ``/proc/PID/environ`` of hermes or of anything outside its
  sandbox, and (``sandbox.network: false``) can be denied TCP.

Backends
--------
**Landlock** (Linux 5.13+; ABI 7 here) needs no namespaces, no privileges and
works under systemd's ``NoNewPrivileges`` and ``RestrictNamespaces``, which is
why it is the default. The ruleset is built once in hermes (then reused while
the directories it was built from are unchanged) and enforced in the child
between ``fork`` and ``exec`` by a small helper process (:mod:`.spawnd`), so
that hermes itself never pays a full ``fork`` of its own memory. Landlock
grants access by allow-list, so a path is hidden inside a readable tree by
granting the *siblings* along the way to it instead of the parent: to hide
``~/.hermes/.env``, ``/`` gets listing rights only, and each entry of ``/``
but ``root`` gets full read, and so on down to ``.hermes``, whose entries
other than the secrets are granted one by one. Limits, said in the README:
a directory on the way to a hidden path can be listed (names, not content),
and a *new* entry created in such a directory after the ruleset was built is
only visible to commands started after it (the ruleset is rebuilt when a
directory's modification time changes). Writes work the same way: in a
writable directory that contains a protected one, the other entries are
writable, and new top-level files cannot be created there.

The bindings are ``landlockpy`` (0BSD, typed, no dependencies, Landlock ABI
1-11 with network rules and scopes). Weighed against it: ``landlock``
(1.0.0.dev5, a development release without network rules or scopes) and
``py-landlock`` (0.1.1, older ABIs only); writing ctypes by hand would repeat
what landlockpy does in 700 readable lines.

**bubblewrap** (``sandbox.backend: bubblewrap``) builds a mount namespace
instead: ``/`` read-only, the writable directories bound read-write, the
protected ones bound read-only again on top, the secrets covered by an empty
file or directory, a private ``/proc`` and PID namespace, and
``--unshare-net`` when the network is off. It needs user namespaces, which
the NixOS unit's ``RestrictNamespaces`` forbids, and it can only cover
secrets that exist when the command starts.

**Container mode** (the NixOS module's container, whose entrypoint sets
``HERMES_CONTAINER=1``): the container's
own filesystem is writable, so ``apt``, ``pip`` and ``npm install`` work,
while ``HERMES_HOME``, hermes' code and the secrets stay protected exactly as
on a host.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hermes_agent.safety import places as places_module

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config

MODES = ("enforce", "off")
BACKENDS = ("auto", "landlock", "bubblewrap")
#: ``ToolContext.state`` key: the session's private temp directory.
TMP_KEY = "sandbox.tmp"

# Landlock filesystem rights (values from the kernel's uapi; landlockpy mirrors them).
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15
RESOLVE_UNIX = 1 << 16

#: What "read" means: run, read, list, use devices.
READ = EXECUTE | READ_FILE | READ_DIR | IOCTL_DEV
#: Landlock ABI that mediates connect() to a socket by its path (RESOLVE_UNIX).
UNIX_ABI = 9
#: What "write" means. Creating device nodes is never granted.
WRITE = (
    WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
    | RESOLVE_UNIX
)
#: Rights that mean something on a file (the kernel refuses the others there).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
#: Rights a directory on the way to a hidden path keeps for itself: listing only.
PASS_THROUGH = READ_DIR
#: Devices every program may write.
DEVICES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
    "/dev/random",
    "/dev/urandom",
)
#: Tool caches pointed into the session's temp directory (see the README's safety
#: model: a cache written by a hostile command would outlive the session).
CACHE_VARS = ("XDG_CACHE_HOME", "npm_config_cache", "PIP_CACHE_DIR", "UV_CACHE_DIR")


# --- what the kernel offers ---------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The Landlock ABI version of this kernel, or 0 where there is none.

    0 on other systems, on kernels without Landlock (or with it disabled at
    boot), and where a seccomp filter refuses the system call.
    """
    if sys.platform != "linux":
        return 0
    # The probe itself, without importing landlockpy (a chat's start-up header asks
    # this): landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION).
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))
    return abi if abi > 0 else 0


@functools.lru_cache(maxsize=1)
def bubblewrap() -> str | None:
    """The ``bwrap`` program, if it is installed and can make namespaces here."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        done = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-pid", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if done.returncode == 0 else None


@dataclass(frozen=True)
class Support:
    """Which backend confines commands here, or why none does."""

    backend: str | None
    detail: str
    #: ``sandbox.network: false`` can be enforced.
    network: bool = False


def support(backend: str = "auto") -> Support:
    """What this machine offers for ``sandbox.backend``."""
    abi = landlock_abi()
    if backend in ("auto", "landlock") and abi >= 1:
        return Support("landlock", f"Landlock ABI {abi}", network=abi >= 4)
    if backend in ("auto", "bubblewrap"):
        if bubblewrap():
            return Support("bubblewrap", "bubblewrap (mount, PID and network namespaces)", True)
        if backend == "bubblewrap":
            return Support(None, "bubblewrap is not installed or cannot create namespaces here")
    if sys.platform != "linux":
        return Support(None, f"no kernel confinement on {sys.platform} yet")
    return Support(
        None, "this kernel offers no Landlock (Linux 5.13+ with lsm=landlock) and no bubblewrap"
    )


def in_container() -> bool:
    """hermes runs as the NixOS module's container (its entrypoint says so).

    Both must hold: ``HERMES_CONTAINER=1`` (set by the entrypoint, not by
    anything the agent runs) and a container runtime's marker file. Merely
    running inside some container (a CI runner, a dev box) is not enough: the
    container profile makes the whole filesystem writable but hermes' own.
    """
    if os.environ.get("HERMES_CONTAINER") != "1":
        return False
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


# --- the policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What a confined command may touch; absolute, resolved paths."""

    workspace: str
    writable: tuple[str, ...]
    hidden: tuple[str, ...]
    protected: tuple[str, ...]
    network: bool = True
    container: bool = False
    #: Commands may connect to sockets by path outside their writable places
    #: (the user's tmux, D-Bus, Docker, ssh-agent: ways out of any sandbox).
    unix_sockets: bool = False


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@functools.lru_cache(maxsize=32)
def _resolved(
    where: places_module.Places, allowed: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hidden and the never-writable places, resolved once per set of places.

    Resolving ~100 paths costs milliseconds; the places do not move while
    hermes runs (nothing the agent starts can write them).
    """
    allowed_real = [_real(a) for a in allowed if a.strip() and not any(c in a for c in "*?[")]
    hermes_secrets = {
        _real(os.path.join(h, name))
        for h in where.hermes_homes
        for name in places_module.HERMES_SECRETS
    }
    hidden: list[str] = []
    for secret in where.secrets:
        real = _real(secret)
        if real not in hermes_secrets and any(_within(real, a) for a in allowed_real):
            continue  # The user lets their own credential store through (never hermes').
        hidden.append(real)
    protected = [_real(p) for p in where.no_write]
    return _unique(hidden), _unique(protected)


def policy_for(
    config: Config | Mapping[str, Any],
    workspace: str,
    tmpdir: str,
    *,
    container: bool | None = None,
) -> Policy:
    """The policy for one session: its workspace and temp dir, and the configuration."""
    get = config.get
    container = in_container() if container is None else container
    where = places_module.places()
    allowed = tuple(str(p) for p in (get("files.allow_secret_paths") or ()))
    hidden, protected = _resolved(where, allowed)
    # SSH keys are looked for at each command: a key made after start is hidden too.
    keys = tuple(
        k
        for k in places_module.ssh_keys(where.home)
        if k not in hidden and not any(_within(k, _real(a)) for a in allowed if a.strip())
    )
    writable = ["/"] if container else [_real(workspace), _real(tmpdir)]
    for extra in get("sandbox.writable") or ():
        text = str(extra).strip()
        if text:
            writable.append(_real(text))
    return Policy(
        workspace=_real(workspace),
        writable=_unique(writable),
        hidden=hidden + keys,
        protected=_unique(protected + hidden + keys),
        network=bool(get("sandbox.network", True)),
        container=container,
        unix_sockets=bool(get("sandbox.unix_sockets", False)),
    )


# --- Landlock rules --------------------------------------------------------------------------


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def grant(
    root: str,
    access: int,
    holes: Iterable[str],
    rules: list[tuple[str, int]],
    visited: list[str],
) -> None:
    """Grant ``access`` on the tree at ``root`` except below ``holes``, as rules.

    A tree with no hole in it is one rule. Otherwise the directory keeps only
    :data:`PASS_THROUGH` rights for itself and each of its entries is granted
    the same way (symlinks need no rule: the kernel checks their targets).
    ``visited`` collects the directories read, whose changes make the rules stale.
    """
    inner = [h for h in holes if _within(h, root)]
    if not inner:
        rules.append((root, access))
        return
    if root in inner:
        return
    own = access & PASS_THROUGH
    if own:
        rules.append((root, own))
    visited.append(root)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_symlink():
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            grant(entry.path, access, inner, rules, visited)
        elif entry.path not in inner and access & FILE_RIGHTS:
            rules.append((entry.path, access & FILE_RIGHTS))


def landlock_rules(policy: Policy) -> tuple[list[tuple[str, int]], list[str]]:
    """Every ``(path, rights)`` rule of a policy, and the directories it was read from."""
    rules: list[tuple[str, int]] = []
    visited: list[str] = []
    read = READ | RESOLVE_UNIX if policy.unix_sockets else READ
    # /dev only as far as DEVICES go: a disk (/dev/sda, readable by its owner) holds
    # every file on it, hidden ones included.
    grant("/", read, (*policy.hidden, "/dev"), rules, visited)
    for root in policy.writable:
        if os.path.exists(root):
            grant(root, WRITE | READ, (*policy.protected, "/dev"), rules, visited)
    rules.append(("/dev", READ_DIR))
    for device in DEVICES:
        if os.path.exists(device):
            is_dir = os.path.isdir(device)
            rules.append((device, (READ | WRITE) if is_dir else (READ | WRITE) & FILE_RIGHTS))
    return rules, visited


def _stamp(directories: Iterable[str]) -> tuple[int, ...]:
    out = []
    for directory in directories:
        try:
            out.append(os.stat(directory).st_mtime_ns)
        except OSError:
            out.append(-1)
    return tuple(out)


@dataclass
class _Built:
    ruleset: Any
    visited: list[str]
    stamp: tuple[int, ...]
    rules: int


_lock = threading.Lock()
_built: dict[Policy, _Built] = {}


def _ruleset(policy: Policy) -> _Built:
    """The Landlock ruleset of ``policy``: built once, rebuilt when its directories change."""
    from landlockpy import AccessFS, AccessNet, Ruleset, Scope

    with _lock:
        cached = _built.get(policy)
        if cached is not None and _stamp(cached.visited) == cached.stamp:
            return cached
        rules, visited = landlock_rules(policy)
        stamp = _stamp(visited)
        handled_net = AccessNet.NONE if policy.network else None  # None: every right it knows
        ruleset = Ruleset(
            handled_fs=None,
            handled_net=handled_net,
            scoped=Scope.SIGNAL | Scope.ABSTRACT_UNIX_SOCKET,
        )
        handled = int(ruleset.handled_fs)
        for path, rights in rules:
            wanted = rights & handled
            if not wanted:
                continue
            # A path that vanished or is not a plain file system object (a pipe behind
            # a /proc link) gets no rule: less access, never more.
            with contextlib.suppress(OSError):
                ruleset.allow_path(path, AccessFS(wanted))
        built = _Built(ruleset, visited, stamp, len(rules))
        # A ruleset replaced here may still be on its way into a child that another
        # task is starting: it is closed by the garbage collector once unused, not now.
        _built.pop(policy, None)
        if len(_built) > 16:  # Sessions come and go in a gateway: keep a few.
            _built.pop(next(iter(_built)))
        _built[policy] = built
        return built


def bubblewrap_argv(policy: Policy, bwrap: str, cwd: str) -> list[str]:
    """The ``bwrap`` prefix that applies ``policy`` (see the module docstring)."""
    # No --die-with-parent: its parent-death signal belongs to the spawner's short-lived
    # thread, not to the spawner. No --new-session: the command stays in bwrap's process
    # group (made by the spawner, without a terminal), so stopping the group stops it.
    argv = [bwrap, "--unshare-pid", "--unshare-ipc"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    if not policy.network:
        argv.append("--unshare-net")
    for root in policy.writable:
        if os.path.exists(root) and root != "/":
            argv += ["--bind", root, root]
    if policy.container:
        argv[argv.index("--ro-bind") : argv.index("--ro-bind") + 3] = ["--bind", "/", "/"]
    for path in policy.protected:
        if os.path.exists(path) and any(_within(path, w) for w in policy.writable):
            argv += ["--ro-bind", path, path]
    for path in policy.hidden:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            argv += ["--tmpfs", path, "--remount-ro", path]
        else:
            argv += ["--ro-bind", "/dev/null", path]
    argv += ["--chdir", cwd, "--"]
    return argv


# --- hermes' own environment block ------------------------------------------------------------

_scrubbed = False


def scrub_environ_block(names: Iterable[str] = ()) -> int:
    """Overwrite secret values in this process's initial environment block; how many.

    ``/proc/PID/environ`` shows the environment a process was started with,
    and Landlock lets a confined child read it for its parent (it blocks
    ``mem`` and ptrace, not this). A provider key exported in the user's shell
    would be one ``cat /proc/$PPID/environ`` away. Python keeps its own copy
    in ``os.environ``, so the block itself can be overwritten in place: the
    values of credential-named variables (and of ``names``) become ``*``.
    C code calling ``getenv`` for those names then sees the stars, which is
    harmless for credentials that hermes reads through ``os.environ``.
    """
    global _scrubbed
    if _scrubbed or sys.platform != "linux":
        return 0
    _scrubbed = True
    import ctypes

    from hermes_agent.redact import is_secret_name

    wanted = set(names)
    try:
        with open("/proc/self/stat", "rb") as handle:
            raw = handle.read()
        fields = raw[raw.rindex(b")") + 2 :].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
    except (OSError, ValueError, IndexError):
        return 0
    if not 0 < start < end or end - start > 1 << 24:
        return 0
    block = ctypes.string_at(start, end - start)
    count = 0
    offset = 0
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        text = name.decode("utf-8", "replace")
        if sep and value and (is_secret_name(text) or text in wanted):
            ctypes.memset(start + offset + len(name) + 1, ord("*"), len(value))
            count += 1
        offset += len(entry) + 1
    return count


# --- confining a launch -------------------------------------------------------------------


@dataclass
class Confinement:
    """How to start one confined command: an argv prefix (bubblewrap), a Landlock
    ruleset and flags for the spawner (:mod:`.spawner`), and additions to its environment."""

    backend: str
    prefix: list[str] = field(default_factory=list)
    #: The Landlock ruleset (a landlockpy ``Ruleset``; its ``fileno()`` goes to the
    #: spawner, :mod:`.spawnd`, whose thread enforces it before it spawns the command).
    ruleset: Any = None
    env: dict[str, str] = field(default_factory=dict)
    rules: int = 0
    #: The spawner adds a seccomp filter: no new AF_UNIX sockets (see :mod:`.spawnd`).
    deny_unix_sockets: bool = False
    #: The spawner empties the capability bounding set (root keeps no privilege).
    drop_capabilities: bool = False


class SandboxError(Exception):
    """The sandbox is required but cannot be set up; the command must not run."""


def mode_of(config: Config | Mapping[str, Any]) -> str:
    mode = str(config.get("sandbox.mode") or "enforce")
    return mode if mode in MODES else "enforce"


def session_tmp(state: dict[str, Any]) -> str:
    """The session's private temp directory (0700), made on first use."""
    existing = state.get(TMP_KEY)
    if existing and os.path.isdir(existing):
        return str(existing)
    path = tempfile.mkdtemp(prefix="hermes-tmp-")
    state[TMP_KEY] = path
    return path


def cleanup(state: dict[str, Any]) -> None:
    """Remove the session's temp directory (at the end of the session)."""
    path = state.pop(TMP_KEY, None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


def confine(
    config: Config | Mapping[str, Any], workspace: str, state: dict[str, Any]
) -> Confinement | None:
    """The confinement for a command of this session, or None when the sandbox is off.

    Raises :class:`SandboxError` when ``sandbox.mode`` is ``enforce``, a backend
    exists, and the rules cannot be applied (the command must not run
    unconfined by accident). Where the machine offers no backend at all it
    returns None: the gate then asks for every command that is not read-only
    (see :func:`active`).
    """
    if mode_of(config) == "off":
        return None
    found = support(str(config.get("sandbox.backend") or "auto"))
    if found.backend is None:
        return None
    from hermes_agent import home
    from hermes_agent.config import envfile

    try:
        env_names = list(envfile.read_env_file(home.env_path()).values)
    except Exception:  # An unreadable .env holds nothing to scrub.
        env_names = []
    scrub_environ_block(env_names)
    tmpdir = session_tmp(state)
    policy = policy_for(config, workspace, tmpdir)
    env = {"TMPDIR": tmpdir, "TMP": tmpdir, "TEMP": tmpdir}
    for name in CACHE_VARS:
        env[name] = os.path.join(tmpdir, ".cache")
    if not policy.network and not found.network:
        raise SandboxError(
            f"sandbox.network is false, but {found.detail} cannot restrict the network; "
            "set sandbox.network: true or use a kernel with Landlock ABI 4+"
        )
    if found.backend == "bubblewrap":
        bwrap = bubblewrap()
        assert bwrap is not None
        return Confinement(
            "bubblewrap",
            bubblewrap_argv(policy, bwrap, workspace),
            None,
            env,
            deny_unix_sockets=not policy.unix_sockets,
        )
    try:
        built = _ruleset(policy)
    except OSError as exc:
        raise SandboxError(f"the Landlock sandbox could not be built: {exc}") from None
    # Where Landlock mediates sockets by path itself, it holds them more finely (the
    # command's own sockets in its writable places still work); before that, the
    # spawner's seccomp filter refuses new AF_UNIX sockets altogether.
    deny = not policy.unix_sockets and landlock_abi() < UNIX_ABI
    return Confinement(
        "landlock",
        [],
        built.ruleset,
        env,
        built.rules,
        deny,
        drop_capabilities=not policy.container,
    )


def active(config: Config | Mapping[str, Any]) -> bool:
    """Commands run confined: the mode is ``enforce`` and the machine has a backend."""
    if mode_of(config) == "off":
        return False
    return support(str(config.get("sandbox.backend") or "auto")).backend is not None


def describe(config: Config | Mapping[str, Any]) -> str:
    """One line for start-up headers: what confines commands, or that nothing does."""
    if mode_of(config) == "off":
        return "sandbox: off (sandbox.mode: off): commands run unconfined"
    found = support(str(config.get("sandbox.backend") or "auto"))
    if found.backend is None:
        return (
            f"sandbox: unavailable ({found.detail}): every command that is not read-only "
            "needs your approval"
        )
    net = "" if config.get("sandbox.network", True) else ", no network"
    return f"sandbox: {found.detail} (writes: workspace and temp only{net})"
