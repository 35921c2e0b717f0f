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
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_agent.safety.flow import Use
from hermes_agent.safety.places import (
    HERMES_GATE,
    HERMES_SECRETS,
    SSH_PUBLIC,
    PathKind,
    Places,
    places,
)
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
_CREDENTIAL_HINT = re.compile(
    r"\.ssh|shadow|sudoers|\.aws|\.netrc|credentials|\.docker|\.kube|\.pgpass|\.gnupg"
)

#: Where a command may write without a second look: the usual scratch directories.
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/private/tmp", "/private/var/folders", "/var/folders")
#: Strongest kind first, as :mod:`hermes_agent.safety.places` orders them.
_STRENGTH = {
    PathKind.SECRET: 0,
    PathKind.GATE: 1,
    PathKind.CODE: 2,
    PathKind.PERSONA: 3,
    PathKind.STATE: 4,
    PathKind.STARTUP: 5,
}
#: Never written by anything the agent runs (refused, whatever the approval mode).
NEVER_WRITTEN = frozenset((PathKind.SECRET, PathKind.GATE, PathKind.CODE))
#: HERMES_HOME entries the classifier adds to what places.py knows: the audit log of
#: approval decisions is part of the gate (erasing it hides what the agent did).
_EXTRA_GATE = ("logs/approvals.jsonl",)
#: The gate and secret files of any hermes home, wherever it is.
_ANY_HERMES_GATE = re.compile(
    r"/\.hermes/(config\.yaml|\.env|auth\.json|\.managed|mcp-tokens|logs/approvals\.jsonl)(/|$)"
)
#: HERMES_HOME files whose hard links are writes to the gate or the secrets.
GATE_FILES = (*HERMES_GATE, *HERMES_SECRETS, *_EXTRA_GATE)


@dataclass(frozen=True)
class Index:
    """The protected places of :mod:`~hermes_agent.safety.places`, indexed for lookups.

    A path's kind is found by walking up its parents (a few dict lookups), and the
    kinds of what lies *below* a directory by one lookup, so that every word of
    every command can be checked without scanning the list of places.
    """

    home: str
    hermes_homes: tuple[str, ...]
    kinds: dict[str, PathKind]
    #: The same, as ranks (0 strongest) for a cheap comparison.
    ranks: dict[str, int]
    below: dict[str, frozenset[PathKind]]
    #: Protected places by their last component (for ``$UNKNOWN/config.yaml``).
    by_name: dict[str, tuple[tuple[str, PathKind], ...]]
    #: Literal spellings searched for inside inline code: (text, kind).
    spellings: tuple[tuple[str, PathKind], ...]


def _index_for(where: Places) -> Index:
    kinds: dict[str, PathKind] = {}

    def put(path: str, kind: PathKind) -> None:
        old = kinds.get(path)
        if old is None or _STRENGTH[kind] < _STRENGTH[old]:
            kinds[path] = kind

    for path, kind in where.table:
        put(norm(path), kind)
    for home in where.hermes_homes:
        for name in _EXTRA_GATE:
            put(f"{home}/{name}", PathKind.GATE)
    below: dict[str, set[PathKind]] = {}
    by_name: dict[str, list[tuple[str, PathKind]]] = {}
    for path, kind in kinds.items():
        by_name.setdefault(path.rsplit("/", 1)[-1], []).append((path, kind))
        parent = posixpath.dirname(path)
        while True:
            below.setdefault(parent, set()).add(kind)
            if parent == "/":
                break
            parent = posixpath.dirname(parent)
    spelled_homes = [*where.hermes_homes, "~/.hermes", ".hermes", "$HERMES_HOME", "${HERMES_HOME}"]
    spellings: list[tuple[str, PathKind]] = []
    for prefix in spelled_homes:
        for name in (*HERMES_SECRETS, *HERMES_GATE, *_EXTRA_GATE):
            kind = PathKind.SECRET if name in HERMES_SECRETS else PathKind.GATE
            spellings.append((f"{prefix}/{name}", kind))
    spellings.extend((path, PathKind.CODE) for path in where.code if len(path) > 4)
    spellings.append(("hermes_agent", PathKind.CODE))
    return Index(
        where.home,
        where.hermes_homes,
        kinds,
        {path: _STRENGTH[kind] for path, kind in kinds.items()},
        {k: frozenset(v) for k, v in below.items()},
        {k: tuple(v) for k, v in by_name.items()},
        tuple(spellings),
    )


_indexes: dict[tuple[str, str], Index] = {}


def index() -> Index:
    """The index of the protected places for the current ``HOME``/``HERMES_HOME``."""
    key = (os.environ.get("HOME", ""), os.environ.get("HERMES_HOME", ""))
    found = _indexes.get(key)
    if found is None:
        if len(_indexes) > 8:
            _indexes.clear()
        found = _indexes[key] = _index_for(places())
    return found


def kind_at(idx: Index, path: str) -> PathKind | None:
    """The strongest kind of protected place at or above the absolute ``path``."""
    ranks = idx.ranks
    best = 99
    hit = ""
    p = path
    while p:
        rank = ranks.get(p)
        if rank is not None and rank < best:
            best, hit = rank, p
        cut = p.rfind("/")
        if cut <= 0:
            if p != "/" and "/" in ranks and ranks["/"] < best:
                best, hit = ranks["/"], "/"
            break
        p = p[:cut]
    if best != 0 and "/.ssh/" in path and is_ssh_key(path):
        return PathKind.SECRET
    return idx.kinds[hit] if hit else None


def is_ssh_key(path: str) -> bool:
    """A file directly in any ``.ssh`` directory that is not public (as places.py says)."""
    parent, name = posixpath.split(path)
    return parent.endswith("/.ssh") and not SSH_PUBLIC.fullmatch(name)


def in_hermes_home(idx: Index, path: str) -> bool:
    return any(path == h or path.startswith(h + "/") for h in idx.hermes_homes)


@dataclass(slots=True)
class Spot:
    """What a word names among the protected places."""

    #: Kind at (or above) the path -> whether that is certain (a glob may only match).
    at: dict[PathKind, bool]
    #: Kinds of protected places below the path (it is a directory above them).
    below: set[PathKind]
    #: The places involved lie in a HERMES_HOME (its secrets are refused, not asked).
    hermes: bool
    path: str


def spot(an: Analysis, f: Field) -> Spot | None:
    """The protected places ``f`` names, following symlinks; None when it names none."""
    text = f.text
    if not text or an.plain_here(text):
        return None
    idx = an.index
    lexical = an.resolve(text)
    if not lexical.startswith("/"):
        if lexical.startswith(UNKNOWN) or has_glob(lexical):
            return _glob_spot(idx, lexical)
        return None
    if has_glob(lexical):
        return _glob_spot(idx, lexical)
    at: dict[PathKind, bool] = {}
    below: set[PathKind] = set()
    hermes = False
    forms = [lexical]
    real = an.real(text)
    if real != lexical:
        forms.append(real)
    for path in forms:
        kind = kind_at(idx, path)
        if kind is not None:
            at[kind] = True
            hermes = hermes or in_hermes_home(idx, path)
        under = idx.below.get(path)
        if under:
            below |= under
            hermes = hermes or any(h.startswith(path.rstrip("/") + "/") for h in idx.hermes_homes)
    if not at and not below:
        return None
    return Spot(at, below, hermes, forms[-1])


def _glob_spot(idx: Index, path: str) -> Spot | None:
    """Protected places a glob (or a path under an unknown directory) may match."""
    pattern = glob_pattern(path)
    prefix = static_prefix(path)
    at: dict[PathKind, bool] = {}
    below: set[PathKind] = set()
    hermes = False
    if prefix.startswith("/"):
        parent = prefix if prefix.endswith("/") else posixpath.dirname(prefix)
        parent = parent.rstrip("/") or "/"
        if parent not in idx.below and kind_at(idx, parent) is None:
            return None
        for target, kind in idx.kinds.items():
            if target.startswith(prefix) and fnmatch.fnmatchcase(target, pattern):
                at[kind] = True
                hermes = hermes or in_hermes_home(idx, target)
        for directory, kinds in idx.below.items():
            if directory.startswith(prefix) and fnmatch.fnmatchcase(directory, pattern):
                below |= kinds
                hermes = hermes or in_hermes_home(idx, directory + "/x")
        if not at and not below:
            above = kind_at(idx, parent)
            if above is not None:
                at[above] = True
                hermes = in_hermes_home(idx, parent)
    else:
        last = pattern.rsplit("/", 1)[-1]
        if not last.strip("*"):
            return None
        candidates = (
            idx.by_name.get(last, ())
            if not has_glob(last)
            else [t for items in idx.by_name.values() for t in items]
        )
        for target, kind in candidates:
            if fnmatch.fnmatchcase(target.rsplit("/", 1)[-1], last):
                at.setdefault(kind, False)
                hermes = hermes or in_hermes_home(idx, target)
    if not at and not below:
        return None
    return Spot(at, below, hermes, path)


def _outside_workspace(an: Analysis, path: str, real: str) -> bool:
    workspace = an.workspace
    if workspace is None or not path.startswith("/"):
        return False
    for p in (path, real):
        if p in _SAFE_DEVICES or p.startswith(("/dev/fd/", "/proc/self/fd/")):
            return False
        if p == workspace or p.startswith(workspace.rstrip("/") + "/"):
            return False
        if an.real_workspace and (
            p == an.real_workspace or p.startswith(an.real_workspace.rstrip("/") + "/")
        ):
            return False
        if p.startswith(an.temp_dirs) and not p.startswith(an.index.home.rstrip("/") + "/"):
            return False
    return True


_WHAT = {
    PathKind.SECRET: "hermes' secrets ({shown})",
    PathKind.GATE: "hermes' own configuration ({shown}), which holds its approval settings",
    PathKind.CODE: "hermes' own code or the Python environment it runs in ({shown})",
    PathKind.PERSONA: "{shown}, which enters every later system prompt",
    PathKind.STATE: "files in HERMES_HOME ({shown}): memories, skills, sessions",
    PathKind.STARTUP: "{shown}, a shell start-up, ssh or autostart file",
}


def _judge_write(
    an: Analysis,
    kind: PathKind,
    certain: bool,
    hermes: bool,
    what: str,
    f: Field,
    argv: Sequence[Field],
    *,
    inside: bool = False,
) -> None:
    shown = f.shown
    thing = _WHAT[kind].format(shown=shown)
    if kind is PathKind.SECRET and not hermes:
        thing = f"a credentials file ({shown})"
    place = f"something inside {thing}" if inside else thing
    if kind in NEVER_WRITTEN and (hermes or kind is not PathKind.SECRET):
        if certain:
            an.add(
                Level.REFUSED,
                f"{what} {place}: the agent cannot change hermes' gate, secrets or code",
                "hermes gate",
                argv,
                gate=True,
            )
        else:
            an.add(Level.APPROVAL, f"may change {place}", argv=argv, gate=True)
    elif kind is PathKind.STARTUP:
        an.add(Level.APPROVAL, f"{what} {place}", "write start-up file", argv)
    else:
        an.add(Level.APPROVAL, f"{what} {place}", argv=argv, gate=kind is not PathKind.SECRET)


#: The directory a command writes into when none is given (``tar x``, ``unzip x.zip``).
HERE = Field(".", "<the working directory>")


def _judge_tree_write(
    an: Analysis, found: Spot, what: str, f: Field, argv: Sequence[Field]
) -> None:
    """A write that reaches everything under ``f`` (extraction, recursive copy, delete)."""
    below = found.below
    shown = f.shown
    if f.raw == HERE.raw and an.cwd == an.workspace and an.cwd_known:
        # Extracting where the user's workspace is (a workspace that holds hermes' home:
        # the home directory itself): asked, not refused; the sandbox keeps HERMES_HOME
        # read-only, and `cd ~ && tar x` from elsewhere is still refused.
        an.add(
            Level.APPROVAL,
            f"{what} the workspace {an.workspace}, which holds hermes' files or start-up files",
            argv=argv,
            gate=True,
        )
        return
    if below & NEVER_WRITTEN and (found.hermes or below & {PathKind.GATE, PathKind.CODE}):
        held = [
            name
            for kind, name in (
                (PathKind.GATE, "configuration"),
                (PathKind.SECRET, "secrets"),
                (PathKind.CODE, "code"),
            )
            if kind in below
        ]
        an.add(
            Level.REFUSED,
            f"{what} {shown}, which holds hermes' own {' and '.join(held)}: the agent cannot "
            "change hermes' gate, secrets or code",
            "hermes gate",
            argv,
            gate=True,
        )
    elif below & {PathKind.STATE, PathKind.PERSONA}:
        an.add(
            Level.APPROVAL,
            f"{what} {shown}, which holds HERMES_HOME files (memories, skills, SOUL.md)",
            argv=argv,
            gate=True,
        )
    elif below & {PathKind.STARTUP, PathKind.SECRET}:
        an.add(
            Level.APPROVAL,
            f"{what} {shown}, which holds shell start-up, ssh or credentials files",
            "write start-up file",
            argv,
        )


def check_write(
    an: Analysis,
    f: Field,
    what: str,
    argv: Sequence[Field],
    *,
    into: bool = False,
    sweeping: bool = False,
) -> None:
    """A file the command writes (or a directory it writes into, or deletes whole)."""
    text = f.text
    if text not in ("/dev/null", "/dev/stdout", "/dev/stderr"):
        an.wrote = True
    if f.dynamic and text.startswith(UNKNOWN):
        an.add(
            Level.APPROVAL,
            f"{what} a file whose name is only known when it runs ({f.raw})",
            argv=argv,
        )
        return
    if an.plain_here(text):
        # A plain name inside a workspace that holds nothing protected: only its name
        # (authorized_keys...) and a hard link to hermes' files can matter.
        name = text.rstrip("/").rsplit("/", 1)[-1]
        if name in _USER_CONFIG_NAMES:
            an.add(
                Level.APPROVAL,
                f"{what} {f.shown}, a shell start-up, ssh or credentials file",
                "write start-up file",
                argv,
            )
        if an.gate_inode(an.real(text)):
            an.add(
                Level.REFUSED,
                f"{what} {f.shown}, a hard link to hermes' own configuration or secrets",
                "hermes gate",
                argv,
                gate=True,
            )
        return
    path = an.resolve(text)
    real = an.real(text) if path.startswith("/") and not has_glob(path) else path
    if DISK_DEVICE.match(path) or DISK_DEVICE.match(real):
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
    found = spot(an, f)
    startup = False
    if found is None and _ANY_HERMES_GATE.search(real or path):
        # Another hermes home than this one (another user's, or HOME changed): its gate
        # and secrets are never written either.
        found = Spot({PathKind.GATE: True}, set(), True, real or path)
    if found is not None:
        startup = PathKind.STARTUP in found.at
        for kind, certain in found.at.items():
            _judge_write(an, kind, certain, found.hermes, what, f, argv)
        if (into or sweeping) and found.below:
            _judge_tree_write(an, found, what, f, argv)
    elif real.startswith("/") and an.gate_inode(real):
        an.add(
            Level.REFUSED,
            f"{what} {f.shown}, a hard link to hermes' own configuration or secrets",
            "hermes gate",
            argv,
            gate=True,
        )
    if path == "/":
        an.add(Level.APPROVAL, f"{what} / itself, the root of the file system", "write /", argv)
        return
    for p in dict.fromkeys((path, real)):
        if p.startswith("/") and not p.startswith(_NOT_SYSTEM):
            for prefix in _SYSTEM_DIRS:
                if p == prefix or p.startswith(prefix + "/"):
                    an.add(Level.APPROVAL, f"{what} the system path {p}", f"write {prefix}", argv)
                    return
            home = an.index.home
            if (
                p.count("/") == 1
                and not p.startswith("/tmp")
                and not (p == home or home.startswith(p + "/"))
            ):
                an.add(Level.APPROVAL, f"{what} {p} at the file system root", "write /", argv)
                return
        parts = p.split("/")
        if not startup and (
            parts[-1] in _USER_CONFIG_NAMES or any(q in _USER_CONFIG_DIRS for q in parts[:-1])
        ):
            an.add(
                Level.APPROVAL,
                f"{what} {p}, a shell start-up, ssh or credentials file",
                "write start-up file",
                argv,
            )
            return
    if not has_glob(path) and _outside_workspace(an, path, real):
        an.add(
            Level.APPROVAL,
            f"{what} {f.shown}, outside the workspace",
            "write outside the workspace",
            argv,
        )


def check_read(
    an: Analysis,
    f: Field,
    argv: Sequence[Field],
    *,
    tree: bool = False,
    names_only: bool = False,
    hidden: bool = True,
) -> None:
    """A file (or, with ``tree``, a whole directory tree) whose content is read.

    ``hidden=False``: the tree is walked without entering dot-files and
    dot-directories (``rg``, ``ag`` by default), so only secrets reachable
    without one count.
    """
    found = spot(an, f)
    if found is not None:
        secret = found.at.get(PathKind.SECRET)
        if secret is None and tree and PathKind.SECRET in found.below:
            secret = True if hidden else _visible_secret(an.index, found.path)
        if secret is not None:
            shown = f.shown
            whole = tree and PathKind.SECRET not in found.at
            if found.hermes and secret and not names_only:
                what = (
                    f"everything under {shown}, including hermes' secrets"
                    if whole
                    else f"hermes' secrets ({shown})"
                )
                an.add(
                    Level.REFUSED,
                    f"reads {what}: the agent never reads its own credentials (.env, "
                    "auth.json, mcp-tokens)",
                    "hermes secrets",
                    argv,
                    gate=True,
                )
            elif found.hermes:
                an.add(
                    Level.APPROVAL,
                    f"touches hermes' credentials ({shown})",
                    argv=argv,
                    gate=True,
                )
            else:
                what = f"everything under {shown}, including credentials" if whole else shown
                an.add(
                    Level.APPROVAL,
                    f"reads credentials ({what})",
                    f"credentials {found.path}",
                    argv,
                )
            return
    text = f.text
    if _CREDENTIAL_HINT.search(text):
        path = an.resolve(text)
        if _CREDENTIAL_RE.search(path):
            an.add(Level.APPROVAL, f"touches credentials ({f.shown})", f"credentials {path}", argv)


def _visible_secret(idx: Index, tree: str) -> bool | None:
    """Whether a secret lies below ``tree`` on a path without dot-components."""
    prefix = tree.rstrip("/") + "/"
    for path, kind in idx.kinds.items():
        if kind is PathKind.SECRET and path.startswith(prefix):
            rel = path[len(prefix) :]
            if not any(part.startswith(".") for part in rel.split("/")):
                return True
    return None


def _maybe_path(f: Field) -> Field | None:
    """The path in a word: the word itself, or the value of ``--opt=PATH``/``KEY=PATH``."""
    text = f.text
    if text.startswith("-") or ("=" in text and not text.startswith(("/", "~", "."))):
        if "=" not in text:
            return None
        value = text.split("=", 1)[1]
        if "/" not in value:
            return None
        return Field(value, f.raw, f.dynamic)
    return f


def check_mentions(
    an: Analysis,
    args: Sequence[Field],
    use: Use,
    *,
    argv: Sequence[Field] = (),
    assignment: bool = False,
) -> None:
    """Protected places named by a command's other words, and what it may do to them."""
    judged = {id(f) for f in (*use.writes, *use.into, *use.trees)}
    for word in args:
        if id(word) in judged:
            continue
        f = _maybe_path(word)
        if f is None:
            continue
        if assignment:
            found = spot(an, f)
            if (
                found is not None
                and found.hermes
                and ({PathKind.GATE, PathKind.SECRET} & found.at.keys())
            ):
                an.add(
                    Level.APPROVAL,
                    "keeps the path of hermes' own configuration or secrets in a variable",
                    "hermes path in variable",
                    gate=True,
                )
            continue
        if use.read_only or use.precise:
            check_read(an, f, argv, names_only=use.names_only)
            continue
        found = spot(an, f)
        if found is None:
            check_read(an, f, argv)
            continue
        for kind, certain in found.at.items():
            if kind is PathKind.SECRET and not found.hermes:
                check_read(an, f, argv)
            elif kind is PathKind.CODE:
                an.add(
                    Level.APPROVAL,
                    f"may change {_WHAT[kind].format(shown=f.shown)}",
                    argv=argv,
                    gate=True,
                )
            else:
                _judge_write(an, kind, certain, found.hermes, "may change", f, argv)
        if PathKind.SECRET in found.below and found.hermes:
            an.add(
                Level.APPROVAL,
                f"works on {f.shown}, which holds hermes' secrets",
                argv=argv,
                gate=True,
            )


def code_mentions(an: Analysis, text: str, argv: Sequence[Field], what: str) -> None:
    """Inline code (python -c, perl -e...) that names hermes' protected files or code."""
    idx = an.index
    for spelling, _kind in idx.spellings:
        if spelling in text:
            an.add(
                Level.REFUSED,
                f"{what} names {spelling}: inline code could change or read hermes' gate, "
                "secrets or code",
                "hermes gate",
                argv,
                gate=True,
            )
            return
    if "~" in text or "/" in text:
        for m in _PATHISH.finditer(text):
            word = m.group(0)
            if not any(h in word for h in _GATE_HINTS):
                continue
            found = spot(an, an.tilde(Field(word, word)))
            if found is not None and found.at.keys() & NEVER_WRITTEN and found.hermes:
                an.add(
                    Level.REFUSED,
                    f"{what} names {word}: inline code could change hermes' gate or secrets",
                    "hermes gate",
                    argv,
                    gate=True,
                )
                return


_PATHISH = re.compile(r"[~/][^\s'\"`;,()\[\]{}]*")
_GATE_HINTS = ("hermes", ".env", "config.y", "auth.json", "mcp-tokens", "approvals", ".managed")


def is_catastrophic(an: Analysis, f: Field) -> bool:
    """``/``, ``~``, top-level system directories, or a glob that covers one."""
    text = f.text
    if text.startswith(UNKNOWN):
        return False
    path = an.resolve(text)
    if path.startswith(UNKNOWN):
        return False
    homes = (an.index.home, posixpath.dirname(an.index.home))
    names = (*_CATASTROPHIC_NAMES, *homes)
    if not has_glob(path):
        return path in names
    pattern = glob_pattern(path)
    return any(fnmatch.fnmatchcase(n, pattern) for n in names) or pattern.rstrip("*/") == ""
