"""The one place that knows which paths are protected, and from what.

The command classifier, the file tools' guard and the kernel sandbox all ask
this module, so that "hermes' own code" or "a secret" means the same thing to
each of them. Paths are absolute; each protected place is listed both as it
is spelled (``$HOME/.hermes``) and as the kernel sees it (every symlink
followed), because a caller may hold either form.

Kinds, strongest first (a path gets the first kind that covers it):

- ``SECRET``: never read nor written by anything the agent runs: hermes'
  ``.env``, ``auth.json``, ``mcp-tokens/``; well-known credential stores in
  the home directory (SSH private keys, ``.aws/credentials``, ``.gnupg/``...);
  the system's password hashes.
- ``GATE``: hermes' own configuration, which holds its approval settings
  (``config.yaml``, ``.managed``, the Nix state file). Readable, never
  written: the agent cannot lift its own gate.
- ``CODE``: hermes' own code and the Python environment it runs in (its
  package, an editable checkout, the venv, site-packages, its console scripts,
  the interpreter installation when it lives in the user's home). Never written.
- ``PERSONA``: ``SOUL.md`` and ``USER.md`` in ``HERMES_HOME``, which enter
  every later system prompt. The file tools ask before writing them.
- ``STATE``: everything else in ``HERMES_HOME`` (state.db, memories, skills,
  cron, logs, sessions). Only hermes' own tools change it.
- ``STARTUP``: files that shells, logins, ssh, git or the desktop run or
  trust later (``~/.bashrc``, ``~/.profile``, ``~/.ssh/``, systemd user units,
  autostart entries, ``~/.local/bin``). Writing them asks first.
"""

from __future__ import annotations

import enum
import functools
import os
import posixpath
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from hermes_agent import home as home_module


class PathKind(enum.Enum):
    SECRET = "secret"
    GATE = "gate"
    CODE = "code"
    PERSONA = "persona"
    STATE = "state"
    STARTUP = "startup"

    @property
    def writable(self) -> bool:
        """Whether anything the agent runs may ever write it (after asking)."""
        return self in (PathKind.PERSONA, PathKind.STARTUP)

    @property
    def readable(self) -> bool:
        return self is not PathKind.SECRET


#: HERMES_HOME entries that are secrets (unreadable) and that are the gate (unwritable).
#: ``checkpoints/`` holds copies of workspace files, so of any credential a workspace
#: of ``~`` has (``~/.ssh/id_ed25519``...): unreadable like the originals.
HERMES_SECRETS = (
    home_module.ENV_FILE,
    home_module.AUTH_FILE,
    home_module.MCP_TOKENS_DIR,
    home_module.CHECKPOINTS_DIR,
)
HERMES_GATE = (home_module.CONFIG_FILE, home_module.MANAGED_MARKER, home_module.NIX_STATE_FILE)
HERMES_PERSONA = ("SOUL.md", "USER.md")

#: Credential stores, relative to a home directory.
HOME_SECRETS = (
    ".aws/credentials",
    ".aws/sso/cache",
    ".config/gcloud",
    ".azure",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".pypirc",
    ".docker/config.json",
    ".kube/config",
    ".config/gh/hosts.yml",
    ".password-store",
    ".local/share/keyrings",
)
#: Prefixes shared with the system's packages: never taken whole as hermes' code.
SYSTEM_PREFIXES = frozenset(("/", "/usr", "/usr/local", "/opt", "/opt/homebrew", "/opt/local"))
SYSTEM_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
#: Files in ``~/.ssh`` that hold no secret (everything else there is treated as a key).
SSH_PUBLIC = re.compile(r".*\.pub|known_hosts.*|config|authorized_keys2?")

#: Run or trusted later by shells, logins, ssh, git, editors or the desktop.
HOME_STARTUP = (
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".bash_aliases",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".zlogout",
    ".kshrc",
    ".cshrc",
    ".tcshrc",
    ".inputrc",
    ".xinitrc",
    ".xprofile",
    ".xsession",
    ".xsessionrc",
    ".pam_environment",
    ".gitconfig",
    ".npmrc",
    ".pythonrc",
    ".vimrc",
    ".ssh",
    ".config/fish",
    ".config/git",
    ".config/systemd",
    ".config/autostart",
    ".config/environment.d",
    ".config/nvim",
    ".local/bin",
    ".local/share/systemd",
    "Library/LaunchAgents",
)


#: The operating system's own directories. Not a :class:`PathKind` (the workspace
#: may lie inside one): callers decide what writing there outside the workspace means.
SYSTEM_DIRS = (
    *("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot"),
    *("/sys", "/proc", "/dev", "/run", "/var", "/opt", "/srv", "/snap", "/nix"),
    *("/System", "/Library", "/Applications", "/private/etc", "/private/var"),
)
#: Scratch space inside the system directories: not the system's.
SCRATCH_DIRS = (
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/private/tmp",
    "/private/var/folders",
    "/var/folders",
)


def is_system(path: str) -> bool:
    """Whether the absolute ``path`` is the system's: under :data:`SYSTEM_DIRS` (scratch
    space excepted), ``/`` itself, or an entry directly in ``/`` (where only the
    system creates things)."""
    path = norm(path)
    if any(path == d or path.startswith(d + "/") for d in SCRATCH_DIRS):
        return False
    if path.count("/") <= 1:
        return True
    return any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS)


@dataclass(frozen=True)
class Places:
    """The protected places for one ``HOME`` and ``HERMES_HOME``."""

    home: str
    hermes_homes: tuple[str, ...]
    secrets: tuple[str, ...]
    gate: tuple[str, ...]
    code: tuple[str, ...]
    persona: tuple[str, ...]
    startup: tuple[str, ...]
    #: (directory, kind) pairs searched by :meth:`kind_of`, strongest kind first.
    table: tuple[tuple[str, PathKind], ...]

    def kind_of(self, path: str) -> PathKind | None:
        """What protects the absolute ``path`` (or a place above it), or None."""
        path = norm(path)
        if _is_ssh_key(path):
            return PathKind.SECRET
        for place, kind in self.table:
            if path == place or path.startswith(place.rstrip("/") + "/"):
                return kind
        return None

    @property
    def no_write(self) -> tuple[str, ...]:
        """Every place nothing the agent runs may write (without asking, where it may)."""
        return (*self.hermes_homes, *self.code, *self.startup)


def norm(path: str) -> str:
    """``path`` with ``..`` and doubled slashes folded (symlinks kept)."""
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _forms(path: str) -> list[str]:
    """A path as spelled and as the kernel resolves it (both, when they differ)."""
    spelled = norm(os.path.expanduser(path))
    real = os.path.realpath(spelled)
    return [spelled] if real == spelled else [spelled, real]


def _is_ssh_key(path: str) -> bool:
    """A file directly in any ``.ssh`` directory (anyone's) that is not public."""
    parent, name = posixpath.split(path)
    return posixpath.basename(parent) == ".ssh" and not SSH_PUBLIC.fullmatch(name)


def ssh_keys(home: str) -> list[str]:
    """The private keys (and anything else that is not public) in ``home/.ssh``."""
    directory = posixpath.join(home, ".ssh")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [posixpath.join(directory, n) for n in sorted(names) if not SSH_PUBLIC.fullmatch(n)]


def code_places() -> list[str]:
    """hermes' own code and the Python environment running it."""
    import hermes_agent

    found: list[str] = []
    package = Path(hermes_agent.__file__).resolve().parent
    found.append(str(package))
    # An editable install: the checkout holding src/hermes_agent (its scripts, its
    # pyproject and lock decide what the next install runs).
    if package.parent.name == "src" and (package.parent.parent / "pyproject.toml").is_file():
        found.append(str(package.parent.parent))
    # The environment's prefix, unless it is the system's own (a container installs
    # packages into /usr; the system directories are protected by other means).
    for prefix in (sys.prefix, sys.base_prefix):
        if norm(prefix) not in SYSTEM_PREFIXES:
            found.append(prefix)
    import site  # Here, not at the top: a start-up header need not pay for them.
    import sysconfig

    paths = sysconfig.get_paths()
    for key in ("purelib", "platlib", "scripts", "stdlib", "platstdlib"):
        if paths.get(key) and norm(paths[key]) not in SYSTEM_PREFIXES:
            found.append(paths[key])
    found.extend(getattr(site, "getsitepackages", list)())
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site:
        found.append(user_site)
    # The launchers install.sh links into ~/.local/bin.
    local_bin = os.path.expanduser("~/.local/bin")
    for name in ("hermes", "hermes-agent", "hermes-acp"):
        found.append(posixpath.join(local_bin, name))
    out: list[str] = []
    for item in found:
        for form in _forms(item):
            if form not in out and form != "/":
                out.append(form)
    return out


@functools.lru_cache(maxsize=8)
def _places_for(user_home: str, hermes_home_var: str) -> Places:
    home = norm(user_home or os.path.expanduser("~"))
    homes: list[str] = []
    for candidate in (str(home_module.hermes_home()), posixpath.join(home, ".hermes")):
        for form in _forms(candidate):
            if form not in homes:
                homes.append(form)
    home_forms = _forms(home)

    def under(roots: list[str] | tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for root in roots:
            for name in names:
                for form in (norm(posixpath.join(root, name)), *_forms(posixpath.join(root, name))):
                    if form not in out:
                        out.append(form)
        return tuple(out)

    secrets = (
        *under(homes, HERMES_SECRETS),
        *under(home_forms, HOME_SECRETS),
        *SYSTEM_SECRETS,
        *ssh_keys(home),
    )
    gate = under(homes, HERMES_GATE)
    code = tuple(code_places())
    persona = under(homes, HERMES_PERSONA)
    startup = under(home_forms, HOME_STARTUP)
    table: list[tuple[str, PathKind]] = []
    for places, kind in (
        (secrets, PathKind.SECRET),
        (gate, PathKind.GATE),
        (code, PathKind.CODE),
        (persona, PathKind.PERSONA),
        (tuple(homes), PathKind.STATE),
        (startup, PathKind.STARTUP),
    ):
        table.extend((p, kind) for p in places)
    return Places(home, tuple(homes), secrets, gate, code, persona, startup, tuple(table))


def workspace_persona(workspace: str) -> tuple[str, ...]:
    """``SOUL.md`` and ``USER.md`` at the top of a workspace, spelled and resolved: the
    system prompt reads them before HERMES_HOME's (agent/prompt.py), so they are
    :attr:`PathKind.PERSONA` for sessions working there."""
    found: list[str] = []
    for name in HERMES_PERSONA:
        for form in _forms(posixpath.join(os.path.realpath(workspace), name)):
            if form not in found:
                found.append(form)
        for form in _forms(posixpath.join(workspace, name)):
            if form not in found:
                found.append(form)
    return tuple(found)


def in_git_dir(path: str) -> bool:
    """``path`` is a ``.git`` entry or inside one, at any depth of any tree (a workspace
    included): git runs its hooks and obeys its config (``core.fsmonitor``,
    ``core.hooksPath``, aliases) when the user next runs git, outside any sandbox, and
    a ``.git`` *file* points git at another directory of hooks."""
    return ".git" in norm(path).casefold().split("/")


def places() -> Places:
    """The protected places for the current environment (cached per HOME/HERMES_HOME)."""
    return _places_for(os.environ.get("HOME", ""), os.environ.get(home_module.ENV_VAR, ""))


def kind_of(path: str) -> PathKind | None:
    """What protects the absolute, resolved ``path``, or None."""
    return places().kind_of(path)
