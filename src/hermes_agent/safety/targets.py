"""What it means for a command to touch a path: writes, secrets, hermes' own files.

The command rules (:mod:`hermes_agent.safety.commands`) say which words of a
command are files it writes or reads; the functions here decide what that
means: a disk device or a system path, a shell start-up file, hermes' own
configuration or secrets (the gate), or a catastrophic target for a
recursive delete. Each takes the running analysis, to resolve paths against
its working directory and to record findings.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_agent.safety.flow import Use
from hermes_agent.safety.verdict import Level
from hermes_agent.safety.words import (
    UNKNOWN,
    Field,
    glob_pattern,
    has_glob,
    norm,
    static_prefix,
    word_set,
    word_tuple,
)

if TYPE_CHECKING:
    from hermes_agent.safety.parse import Analysis


_SYSTEM_DIRS = word_tuple(
    """
    /etc /usr /bin /sbin /lib /lib32 /lib64 /libx32 /boot /sys /proc /dev /var /opt /srv
    /snap /nix /System /Library /Applications /private/etc /private/var
    """
)
_NOT_SYSTEM = ("/var/tmp", "/var/folders", "/dev/shm", "/private/var/folders", "/private/tmp")
_SAFE_DEVICES = word_set(
    """
    /dev/null /dev/zero /dev/tty /dev/stdout /dev/stderr /dev/stdin /dev/random /dev/urandom
    /dev/full
    """
)
DISK_DEVICE = re.compile(
    r"^/dev/(sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|rdisk\d|md\d|dm-\d|"
    r"mapper/|loop\d|sr\d|nbd\d|zd\d|root$|disk/)"
)
_CATASTROPHIC_NAMES = word_tuple(
    """
    / /home /root /Users /etc /usr /bin /sbin /lib /lib32 /lib64 /boot /var /opt /dev /proc
    /sys /srv /mnt /media /snap /nix /nix/store /System /Library /Applications
    """
)
#: Files that shells, ssh, git and friends run or trust: writing them needs approval.
_USER_CONFIG_NAMES = word_set(
    """
    .bashrc .bash_profile .bash_login .bash_logout .profile .zshrc .zprofile .zshenv .zlogin
    .zlogout .kshrc .cshrc .tcshrc .inputrc .xinitrc .xprofile .xsession .pam_environment
    .gitconfig .git-credentials .netrc .npmrc .pypirc .pgpass .Xauthority .envrc
    authorized_keys known_hosts
    """
)
_USER_CONFIG_DIRS = word_set(
    """
    .ssh .gnupg .aws .kube .docker autostart LaunchAgents environment.d
    """
)
_CREDENTIAL_RE = re.compile(
    r"(^|/)(\.ssh/(id_[^/]*|[^/]*_key)(?<!\.pub)$|\.aws/credentials$|\.netrc$|\.git-credentials$|"
    r"\.docker/config\.json$|\.kube/config$|\.pgpass$|\.gnupg/|etc/(g?shadow|sudoers)$)"
)
_CREDENTIAL_HINTS = word_tuple(
    ".ssh shadow sudoers .aws .netrc credentials .docker .kube .pgpass .gnupg"
)

#: HERMES_HOME entries, by what touching them means.
HERMES_GATE = {".env": "env", "config.yaml": "config", "logs/approvals.jsonl": "audit"}
_HERMES_SECRET = {"auth.json": "auth", "mcp-tokens": "tokens"}
_HERMES_NAMES = {**HERMES_GATE, **_HERMES_SECRET}
_GATE_HINTS = ("hermes", ".env", "config.y", "auth.json", "mcp-tokens", "approvals")


@dataclass(frozen=True)
class _Places:
    """Where home and HERMES_HOME are, computed once per environment."""

    home: str
    hermes_homes: tuple[str, ...]
    #: (absolute path, kind) of every protected HERMES_HOME entry.
    protected: tuple[tuple[str, str], ...]
    #: Literal spellings of the protected paths, searched for inside any text
    #: (inline code, strings): ``~/.hermes/.env``, ``$HERMES_HOME/.env``...
    spellings: tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=8)
def _places_for(home_env: str, hermes_env: str) -> _Places:
    from hermes_agent import home as home_module

    home = norm(home_env or os.path.expanduser("~"))
    homes: list[str] = []
    actual = str(home_module.hermes_home())
    for candidate in (actual, os.path.realpath(actual), posixpath.join(home, ".hermes")):
        candidate = norm(candidate)
        if candidate not in homes:
            homes.append(candidate)
    protected = tuple((f"{h}/{name}", kind) for h in homes for name, kind in _HERMES_NAMES.items())
    prefixes = [*homes, "~/.hermes", "/.hermes", "$HERMES_HOME", "${HERMES_HOME}"]
    spellings = tuple(
        (f"{p}/{name}", kind) for p in prefixes for name, kind in _HERMES_NAMES.items()
    )
    return _Places(home, tuple(homes), protected, spellings)


def current_places() -> _Places:
    return _places_for(os.environ.get("HOME", ""), os.environ.get("HERMES_HOME", ""))


def check_write(an: Analysis, f: Field, what: str, argv: Sequence[Field]) -> None:
    """A file the command writes: devices, system paths, start-up files."""
    text = f.text
    if f.dynamic and text.startswith(UNKNOWN):
        an.add(
            Level.APPROVAL,
            f"{what} a file whose name is only known when it runs ({f.raw})",
            argv=argv,
        )
        return
    path = an.resolve(text)
    if DISK_DEVICE.match(path):
        an.add(
            Level.REFUSED,
            f"{what} the disk device {path} (destroys the file system on it)",
            "disk device",
            argv,
        )
        return
    if path in _SAFE_DEVICES or path.startswith("/dev/fd/"):
        return
    if path.startswith(("/dev/tcp/", "/dev/udp/")):
        an.add(
            Level.APPROVAL,
            f"opens a network connection through {path} (a reverse-shell pattern)",
            "/dev/tcp",
            argv,
        )
        return
    if path == "/":
        an.add(Level.APPROVAL, f"{what} / itself, the root of the file system", "write /", argv)
        return
    if path.startswith("/") and not path.startswith(_NOT_SYSTEM):
        for prefix in _SYSTEM_DIRS:
            if path == prefix or path.startswith(prefix + "/"):
                an.add(
                    Level.APPROVAL,
                    f"{what} the system path {path}",
                    f"write {prefix}",
                    argv,
                )
                return
        home = an.places.home
        if (
            path.count("/") == 1
            and path != "/"
            and not path.startswith("/tmp")
            and not (path == home or home.startswith(path + "/"))
        ):
            an.add(Level.APPROVAL, f"{what} {path} at the file system root", "write /", argv)
            return
    parts = path.split("/")
    if parts[-1] in _USER_CONFIG_NAMES or any(p in _USER_CONFIG_DIRS for p in parts[:-1]):
        an.add(
            Level.APPROVAL,
            f"{what} {path}, a shell start-up, ssh or credentials file",
            "write start-up file",
            argv,
        )


def hermes_kinds(an: Analysis, f: Field) -> dict[str, bool]:
    """Protected HERMES_HOME entries ``f`` may name: kind -> certain (else: maybe)."""
    text = f.text
    found: dict[str, bool] = {}
    if not (
        f.dynamic
        or has_glob(text)
        or any(h in text for h in _GATE_HINTS)
        or (
            an.cwd is not None
            and _cwd_in_hermes(
                an,
            )
        )
        or text in (".", "..")
        or text.startswith("../")
    ):
        return found
    places = an.places
    for spelling, kind in places.spellings:
        if spelling in text:
            found[kind] = True
    path = an.resolve(text)
    if not has_glob(path):
        for home in places.hermes_homes:
            if path == home or (home + "/").startswith(path.rstrip("/") + "/"):
                found["home"] = True
            elif path.startswith(home + "/"):
                rel = path[len(home) + 1 :]
                kind = _HERMES_NAMES.get(rel) or (
                    "tokens" if rel.startswith("mcp-tokens/") else "other"
                )
                found[kind] = True
        return found
    pattern = glob_pattern(path)
    prefix = static_prefix(path)
    last = pattern.rsplit("/", 1)[-1]
    for target, kind in places.protected:
        if not fnmatch.fnmatchcase(target, pattern):
            continue
        if prefix and target.startswith(prefix):
            found[kind] = True
        elif last.strip("*") and fnmatch.fnmatchcase(target.rsplit("/", 1)[-1], last):
            found.setdefault(kind, False)
    if prefix:
        for home in places.hermes_homes:
            if home.startswith(prefix) and fnmatch.fnmatchcase(home, pattern):
                found["home"] = True
    return found


def _cwd_in_hermes(an: Analysis) -> bool:
    cwd = an.cwd or ""
    return any(cwd == h or cwd.startswith(h + "/") for h in an.places.hermes_homes)


def check_mentions(
    an: Analysis,
    args: Sequence[Field],
    use: Use,
    *,
    argv: Sequence[Field] = (),
    assignment: bool = False,
) -> None:
    """Protected HERMES_HOME files named by a command, and what it may do to them."""
    write_ids = {id(f) for f in use.writes}
    for f in args:
        kinds = hermes_kinds(an, f)
        if not kinds:
            continue
        if assignment:
            writes = False
        elif use.read_only or use.precise:
            writes = id(f) in write_ids
        else:
            writes = True
        for kind, certain in kinds.items():
            hermes_finding(an, kind, certain, writes, f, argv, use.sweeping)
        if assignment and any(k in HERMES_GATE.values() for k in kinds):
            an.add(
                Level.APPROVAL,
                "keeps the path of hermes' own configuration or secrets in a variable",
                "hermes path in variable",
                gate=True,
            )


def hermes_finding(
    an: Analysis,
    kind: str,
    certain: bool,
    writes: bool,
    f: Field,
    argv: Sequence[Field],
    sweeping: bool,
) -> None:
    shown = f.shown
    if kind in ("env", "config", "audit") and writes:
        what = {
            "env": "hermes' secrets file (.env)",
            "config": "hermes' configuration (config.yaml, which holds the approval settings)",
            "audit": "the approvals audit log",
        }[kind]
        if certain:
            an.add(
                Level.REFUSED,
                f"would change {what} ({shown}): the agent cannot lift its own approval gate",
                "hermes gate",
                argv,
                gate=True,
            )
        else:
            an.add(Level.APPROVAL, f"may change {what} ({shown})", argv=argv, gate=True)
    elif kind == "home" and writes and sweeping:
        an.add(
            Level.REFUSED,
            f"would delete or move HERMES_HOME ({shown}), including the approval settings",
            "hermes gate",
            argv,
            gate=True,
        )
    elif kind == "env":
        an.add(Level.APPROVAL, f"reads hermes' secrets file ({shown})", argv=argv, gate=True)
    elif kind in ("auth", "tokens"):
        an.add(
            Level.APPROVAL,
            f"touches hermes' credentials ({shown})",
            argv=argv,
            gate=True,
        )
    elif kind in ("other", "home") and writes:
        an.add(
            Level.APPROVAL,
            f"changes files in HERMES_HOME ({shown}): memories, skills, sessions",
            argv=argv,
            gate=True,
        )


def check_credentials(an: Analysis, args: Sequence[Field], argv: Sequence[Field]) -> None:
    for f in args:
        text = f.text
        if not any(h in text for h in _CREDENTIAL_HINTS):
            continue
        path = an.resolve(text)
        if _CREDENTIAL_RE.search(path):
            an.add(
                Level.APPROVAL,
                f"touches credentials ({f.shown})",
                f"credentials {path}",
                argv,
            )


def is_catastrophic(an: Analysis, f: Field) -> bool:
    """``/``, ``~``, top-level system directories, or a glob that covers one."""
    text = f.text
    if text.startswith(UNKNOWN):
        return False
    path = an.resolve(text)
    if path.startswith(UNKNOWN):
        return False
    homes = (an.places.home, posixpath.dirname(an.places.home))
    names = (*_CATASTROPHIC_NAMES, *homes)
    if not has_glob(path):
        return path in names
    pattern = glob_pattern(path)
    return any(fnmatch.fnmatchcase(n, pattern) for n in names) or pattern.rstrip("*/") == ""
