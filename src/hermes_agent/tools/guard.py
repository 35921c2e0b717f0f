"""The credential guard: which files the agent's tools may not read or write.

Every path a file tool touches passes :func:`check_path` first (the terminal
tool can use the same function for paths it recognises in a command). It
resolves the path the way the operating system will (relative to the
workspace, ``~`` expanded, every symlink and ``..`` followed) and refuses:

- hermes' own secrets: ``HERMES_HOME/.env``, ``auth.json`` and everything in
  ``mcp-tokens/``, for reading and writing;
- hermes' own gate: writes to ``config.yaml`` (it holds the approval settings)
  and to the ``.managed`` marker. Reading ``config.yaml`` is fine. No setting
  lifts this: the agent must not be able to loosen its own approvals;
- writes to hermes' own state: ``memories/``, ``skills/``, ``cron/``,
  ``logs/``, ``sessions/``, ``state.db``. Memories and skills end up in
  future system prompts; the memory and skills tools change them, asking the
  user when ``memory.write_approval`` says so, and ``write_file`` must not be
  a way around that (nor around the audit log in ``logs/``);
- well-known credential stores, wherever the home directory is: SSH private
  keys (and any write inside a ``.ssh`` directory), ``.aws/credentials``,
  ``.config/gcloud/``, ``.azure/``, ``.gnupg/``, ``.netrc``,
  ``.git-credentials``, ``.pgpass``, ``.pypirc``, ``.docker/config.json``,
  ``.kube/config``, ``.config/gh/hosts.yml``;
- private keys: ``*.key``, ``*.p12``, ``*.pfx``, and any file (``*.pem`` or
  otherwise) that starts a PEM ``PRIVATE KEY`` block;
- system secrets: ``/etc/shadow``, ``/etc/gshadow``, ``/proc/*/environ`` (a
  process's environment holds its API keys), and writes to ``/etc/passwd``,
  ``/etc/group`` and ``/etc/sudoers(.d)``;
- a hard link to any of the files above (same inode, another name).

Symlinks are followed on purpose: ``notes.txt -> ~/.hermes/.env`` is the
secrets file under another name, and a ``.env`` that is itself a symlink into
``/run/secrets`` (NixOS, sops-nix) is still the secrets file.

The user can allow specific paths with ``files.allow_secret_paths`` in
config.yaml (a path allows itself and everything under it; ``*`` globs work).
The refusal says so, because a blocked agent should tell its user how to
unblock it rather than look for another way in.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_agent import home
from hermes_agent.tools.registry import ToolError

if TYPE_CHECKING:
    from hermes_agent.tools.registry import ToolContext

ALLOW_KEY = "files.allow_secret_paths"


@dataclass(frozen=True)
class Rule:
    """Why a path is protected, and against what."""

    what: str
    read: bool = True
    write: bool = True
    #: The allow list cannot lift it (hermes' own configuration and approvals).
    hard: bool = False


_HERMES_ENV = Rule("hermes' secrets file (.env with API keys and tokens)")
_HERMES_AUTH = Rule("hermes' credential store (auth.json)")
_HERMES_TOKENS = Rule("an MCP OAuth token file (mcp-tokens/)")
_HERMES_CONFIG = Rule(
    "hermes' own configuration (config.yaml), which holds its approval settings",
    read=False,
    hard=True,
)
_HERMES_MANAGED = Rule(
    "the marker that hands hermes' configuration to NixOS", read=False, hard=True
)
_HERMES_STATE = Rule(
    "hermes' own state, which only its own tools change (the memory and skills tools ask "
    "the user where memory.write_approval says so)",
    read=False,
)
_SSH_KEY = Rule("an SSH private key")
_SSH_DIR = Rule("inside an SSH directory (keys, authorized_keys, config)", read=False)
_PRIVATE_KEY = Rule("a private key")

# Trailing path components that name a credential file wherever it lives
# (any user's home, a container's root...).
_CREDENTIAL_FILES: dict[tuple[str, ...], Rule] = {
    (".aws", "credentials"): Rule("AWS credentials (~/.aws/credentials)"),
    (".netrc",): Rule("a .netrc file (login passwords for hosts)"),
    (".git-credentials",): Rule("git's stored credentials (.git-credentials)"),
    (".pgpass",): Rule("PostgreSQL passwords (.pgpass)"),
    (".pypirc",): Rule("PyPI upload credentials (.pypirc)"),
    (".docker", "config.json"): Rule("Docker registry credentials (~/.docker/config.json)"),
    (".kube", "config"): Rule("a Kubernetes credentials file (~/.kube/config)"),
    (".config", "gh", "hosts.yml"): Rule("GitHub CLI tokens (~/.config/gh/hosts.yml)"),
}
# Directories whose whole content is credentials.
_CREDENTIAL_DIRS: dict[tuple[str, ...], Rule] = {
    (".config", "gcloud"): Rule("Google Cloud credentials (~/.config/gcloud/)"),
    (".azure",): Rule("Azure credentials (~/.azure/)"),
    (".gnupg",): Rule("GnuPG keys (~/.gnupg/)"),
}
# Files in a .ssh directory that hold no secret and may be read.
_SSH_READABLE = re.compile(r".*\.pub|known_hosts.*|config|authorized_keys2?")
_KEY_SUFFIXES = (".key", ".p12", ".pfx")

_SYSTEM: dict[str, Rule] = {
    "/etc/shadow": Rule("the system password hashes (/etc/shadow)"),
    "/etc/shadow-": Rule("a backup of the system password hashes"),
    "/etc/gshadow": Rule("the system group password hashes (/etc/gshadow)"),
    "/etc/gshadow-": Rule("a backup of the system group password hashes"),
    "/etc/passwd": Rule("the system user database", read=False),
    "/etc/group": Rule("the system group database", read=False),
    "/etc/sudoers": Rule("the sudo configuration"),
}
_SYSTEM_DIRS: dict[str, Rule] = {
    "/etc/sudoers.d": Rule("the sudo configuration (/etc/sudoers.d)"),
}
_PROC_SECRETS = {"environ": "a process's environment (it holds API keys)", "mem": "process memory"}

# A PEM private key: the BEGIN line at the start of a line, then key material
# (so a document that merely mentions the header is not mistaken for a key).
_PEM_PRIVATE = re.compile(
    rb"(?m)^-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[ \t\r]*$"
    rb"[\s\S]{0,400}?[A-Za-z0-9+/]{40}"
)
_SNIFF_BYTES = 1 << 20


def _lexical(path: str | os.PathLike[str], cwd: str) -> Path:
    """``path`` made absolute against ``cwd`` with ``~`` expanded, ``..`` folded, links kept."""
    return Path(os.path.normpath(os.path.join(cwd, os.path.expanduser(os.fspath(path)))))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _contains(parts: tuple[str, ...], sequence: tuple[str, ...]) -> bool:
    n = len(sequence)
    return any(parts[i : i + n] == sequence for i in range(len(parts) - n + 1))


def _under(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


class Guard:
    """The guard for one workspace and configuration; checks many paths cheaply.

    :func:`check_path` is the one-call form. Tools that check many paths (a
    search over a tree) build one ``Guard`` and call :meth:`refusal`.
    """

    def __init__(self, cwd: str, allow: list[str] | None = None) -> None:
        self.cwd = cwd
        hermes_files: list[tuple[Path, Rule]] = [
            (home.env_path(), _HERMES_ENV),
            (home.auth_path(), _HERMES_AUTH),
            (home.config_path(), _HERMES_CONFIG),
            (home.managed_marker_path(), _HERMES_MANAGED),
        ]
        self._exact: dict[Path, Rule] = {}
        db = home.state_db_path()
        hermes_files += (
            (path, _HERMES_STATE)
            for path in (
                db,
                db.with_name(db.name + "-wal"),
                db.with_name(db.name + "-shm"),
                home.gateway_pid_path(),
                home.path(home.NIX_STATE_FILE),
            )
        )
        for path, rule in hermes_files:
            self._exact[_lexical(path, cwd)] = rule
            self._exact[_real(path)] = rule
        for name, rule in _SYSTEM.items():
            self._exact[Path(name)] = rule
        state_dirs = (
            home.memories_dir(),
            home.skills_dir(),
            home.cron_dir(),
            home.logs_dir(),
            home.sessions_dir(),
        )
        self._dirs: list[tuple[Path, Rule]] = [
            (_lexical(home.mcp_tokens_dir(), cwd), _HERMES_TOKENS),
            (_real(home.mcp_tokens_dir()), _HERMES_TOKENS),
            *((_real(d), _HERMES_STATE) for d in state_dirs),
            *((_lexical(d, cwd), _HERMES_STATE) for d in state_dirs),
            *((Path(name), rule) for name, rule in _SYSTEM_DIRS.items()),
        ]
        self._allow = [self._allow_entry(entry) for entry in allow or () if entry]
        self._inodes: dict[tuple[int, int], Rule] | None = None

    def _allow_entry(self, entry: str) -> tuple[str, Path | None]:
        lexical = _lexical(entry, self.cwd)
        if any(ch in entry for ch in "*?["):
            return str(lexical), None
        return str(lexical), _real(lexical)

    # --- the checks ------------------------------------------------------------

    def resolve(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """``(lexical, real)`` forms of ``path``; a clear error for an unusable one."""
        raw = os.fspath(path)
        if not raw.strip():
            raise ToolError("the path is empty")
        if "\0" in raw:
            raise ToolError("the path contains a NUL character")
        lexical = _lexical(raw, self.cwd)
        return lexical, _real(lexical)

    def rule_for(self, lexical: Path, real: Path, *, write: bool) -> Rule | None:
        """The rule that protects this path against this access, or None."""
        for candidate in (real, lexical):
            rule = self._path_rule(candidate, write=write)
            if rule is not None:
                return rule
        if not write:
            return self._content_rule(real)
        if real.suffix.lower() == ".pem" and self._content_rule(real) is not None:
            return _PRIVATE_KEY  # Overwriting an existing private key.
        return None

    def _path_rule(self, path: Path, *, write: bool) -> Rule | None:
        def applies(rule: Rule) -> bool:
            return rule.write if write else rule.read

        rule = self._exact.get(path)
        if rule is not None and applies(rule):
            return rule
        for directory, rule in self._dirs:
            if applies(rule) and _under(path, directory):
                return rule
        parts = path.parts
        for tail, rule in _CREDENTIAL_FILES.items():
            if parts[-len(tail) :] == tail and applies(rule):
                return rule
        for sequence, rule in _CREDENTIAL_DIRS.items():
            if _contains(parts, sequence) and applies(rule):
                return rule
        if ".ssh" in parts[:-1]:
            if write:
                return _SSH_DIR
            if not _SSH_READABLE.fullmatch(path.name):
                return _SSH_KEY
        if path.name.lower().endswith(_KEY_SUFFIXES):
            return _PRIVATE_KEY
        if len(parts) > 2 and parts[1] == "proc" and parts[-1] in _PROC_SECRETS:
            return Rule(_PROC_SECRETS[parts[-1]])
        return None

    def _content_rule(self, real: Path) -> Rule | None:
        """Rules that need the file itself: a private key inside, a hard link to a secret."""
        try:
            info = real.stat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_nlink > 1:
            rule = self._secret_inodes().get((info.st_dev, info.st_ino))
            if rule is not None:
                return rule
        try:
            with real.open("rb") as handle:
                head = handle.read(_SNIFF_BYTES)
        except OSError:
            return None  # The read itself will fail with a clear error.
        if b"PRIVATE KEY" in head and _PEM_PRIVATE.search(head):
            return _PRIVATE_KEY
        return None

    def _secret_inodes(self) -> dict[tuple[int, int], Rule]:
        if self._inodes is None:
            self._inodes = {}
            candidates = [(p, r) for p, r in self._exact.items() if r.read]
            for directory, rule in self._dirs:
                if rule.read and directory.is_dir():
                    candidates.extend((p, rule) for p in directory.rglob("*"))
            user_home = Path.home()
            for tail, rule in _CREDENTIAL_FILES.items():
                candidates.append((user_home.joinpath(*tail), rule))
            ssh = user_home / ".ssh"
            if ssh.is_dir():
                candidates.extend(
                    (p, _SSH_KEY) for p in ssh.iterdir() if not _SSH_READABLE.fullmatch(p.name)
                )
            for path, rule in candidates:
                try:
                    info = path.stat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    self._inodes.setdefault((info.st_dev, info.st_ino), rule)
        return self._inodes

    def allowed(self, lexical: Path, real: Path) -> bool:
        """Whether the user listed this path in ``files.allow_secret_paths``."""
        for pattern, resolved in self._allow:
            if resolved is None:
                if fnmatch.fnmatchcase(str(real), pattern) or fnmatch.fnmatchcase(
                    str(lexical), pattern
                ):
                    return True
            elif _under(real, resolved) or _under(lexical, Path(pattern)):
                return True
        return False

    def refusal(self, path: str | os.PathLike[str], *, write: bool) -> str | None:
        """Why the access is refused (the whole message), or None when it is allowed."""
        lexical, real = self.resolve(path)
        rule = self.rule_for(lexical, real, write=write)
        if rule is None or (not rule.hard and self.allowed(lexical, real)):
            return None
        shown = f"{os.fspath(path)!s}"
        if real != lexical or shown != str(real):
            shown += f" (= {real})"
        if rule.hard:
            return (
                f"refused to write {shown}: it is {rule.what}. The agent may not change its "
                "own configuration or approvals; the user can, with `hermes config set KEY "
                "VALUE` or `hermes config edit`."
            )
        verb = "write" if write else "read"
        return (
            f"refused to {verb} {shown}: it is {rule.what}. The credential guard keeps "
            f"secrets out of the conversation. If the user wants the agent to {verb} it, "
            f"they can allow the path in config.yaml under `{ALLOW_KEY}` "
            f"(e.g. `hermes config set {ALLOW_KEY} '[\"{real}\"]'`)."
        )

    def check(self, path: str | os.PathLike[str], *, write: bool) -> Path:
        """The resolved path to use, or :class:`ToolError` with the reason."""
        reason = self.refusal(path, write=write)
        if reason is not None:
            raise ToolError(reason)
        return _real(_lexical(path, self.cwd))


def guard_for(ctx: ToolContext) -> Guard:
    """The guard for a tool call's workspace and configuration."""
    allow = ctx.config.get(ALLOW_KEY) or []
    return Guard(ctx.cwd, [str(entry) for entry in allow])


def check_path(path: str | os.PathLike[str], ctx: ToolContext, *, write: bool) -> Path:
    """Resolve ``path`` (relative to ``ctx.cwd``; ``~``, ``..`` and symlinks followed)
    and return it, or raise :class:`ToolError` naming the path, why it is
    protected, and how the user can allow it.

    Use the returned path for the actual access: it is the file that was
    checked, so writing through a symlink changes its target, not the link.
    """
    return guard_for(ctx).check(path, write=write)
