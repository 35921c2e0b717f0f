"""The file tools' guard: which paths ``read_file``, ``write_file``, ``patch`` and
``search_files`` may touch, and which writes need the user first.

The facts (where hermes' secrets, gate, code, state and persona live, which
files shells and logins trust) come from :mod:`hermes_agent.safety.places`,
the one module that knows them for the command classifier, the kernel sandbox
and this guard alike. This module adds what only a file tool can check, and
turns each :class:`~hermes_agent.safety.places.PathKind` into a decision.

Every path is resolved the way the operating system will open it: relative
to the workspace, ``~`` expanded, ``..`` folded, every symlink followed
(also a symlinked parent directory, and a dangling symlink, whose target is
what a write would create). Both the spelled and the resolved path are
checked, and the strongest protection of the two wins, so
``notes.txt -> ~/.hermes/.env`` is the secrets file under another name.
Names are compared case-folded (macOS file systems ignore case), and a path
whose directory *is* a protected place by device and inode (a bind mount of
``HERMES_HOME`` in the workspace) is checked as that place.

Reads (``read_file``, ``search_files``, and ``patch``, which reads first):

- **secrets** are refused: hermes' ``.env``, ``auth.json``, ``mcp-tokens/``
  (always), and credential stores wherever they are (SSH private keys,
  ``.aws/credentials``, ``.gnupg/``... in any home directory), files named
  ``*.key``/``*.p12``/``*.pfx``, any file that holds a PEM private key,
  ``/etc/shadow``, ``/etc/sudoers``, ``/proc/*/environ``, and a hard link to
  any of them. The user can lift this for their own credential stores with
  ``files.allow_secret_paths``, never for hermes' own.

Writes (``write_file``, ``patch``), first match wins:

- secrets as above; ``/etc/passwd`` and ``/etc/group`` too.
- **refused, whatever the settings**: hermes' gate (``config.yaml``,
  ``.managed``), hermes' code and the Python environment running it, the
  rest of ``HERMES_HOME`` (memories and skills change through their own
  tools, which ask where ``memory.write_approval`` says so), and a hard link
  to any protected file.
- **ask the user**: ``SOUL.md``/``USER.md`` in ``HERMES_HOME`` and at the top
  of the workspace (the system prompt of every later session there reads
  them; the text is also scanned like a memory entry, see
  :mod:`hermes_agent.tools.write_guard`); shell start-up files and the
  other places shells, logins, ssh, git or the desktop run or trust later
  (``~/.bashrc``, ``~/.ssh/``, systemd user units..., and anything in a
  ``.git`` directory, the workspace's too: hooks and ``core.fsmonitor`` run
  when the user next runs git). Both ask even inside the workspace, and for
  every write (no "always").
- **free**: the workspace (``terminal.cwd``), directories listed in
  ``sandbox.writable``, and temp space (``/tmp``...). A project's own
  ``.bashrc`` or ``config.yaml`` in the workspace is the project's file.
- **ask the user**: everything else. System paths (``/etc``, ``/usr``,
  ``/var``, ``/opt``...) and anything else outside the workspace, in the home
  directory included: a file outside the workspace may be read later by
  something trusted (``~/bin``, an editor's or a tool's configuration), which
  no list of names can foresee. This is what the kernel sandbox lets a
  command do (write the workspace, temp and ``sandbox.writable`` only), with
  a question instead of a refusal because a file tool writes exactly one
  file the user can see. "always" covers that one file for the session.

``approvals.mode`` does not remove these questions: it governs commands, which
the kernel confines whatever the mode; these writes happen in hermes' own
process, so the question is their only gate. Nobody to ask (a one-shot run,
a cron job) means no. Every refused or asked write, and every refused read by
``read_file``/``patch``, is recorded in ``logs/approvals.jsonl`` like the
terminal's decisions.

A refusal names the path, why it is protected and, where the user can lift
it, how; it never quotes the file.

The check and the access are two steps, and a command of the same session
can change the path in between (swap a directory for a symlink). So the file
tools open exactly the path checked here, one directory at a time without
following symlinks (:mod:`hermes_agent.tools.pinned`), check the opened file
again (:meth:`Guard.opened`), and after a question check the path again
(:meth:`Guard.recheck`).

Limits: hard links to hermes' code are looked for in its package and
checkout, not in the whole Python environment (a write replaces the file by
renaming, so it never changes another name of the same inode anyway).
Only ``SOUL.md``/``USER.md`` at the top of the current workspace count as
persona there; one written into a subdirectory becomes a persona if hermes
is later started in that subdirectory.
"""

from __future__ import annotations

import contextlib
import enum
import fnmatch
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.safety import places as places_module
from hermes_agent.safety.places import SSH_PUBLIC, PathKind, Places
from hermes_agent.tools.registry import ToolError

if TYPE_CHECKING:
    from hermes_agent.tools.registry import ToolContext

ALLOW_KEY = "files.allow_secret_paths"
WRITABLE_KEY = "sandbox.writable"
#: ``ToolContext.state`` key: resolved paths the user answered "always" for.
ALWAYS_KEY = "files.always"
#: ``ToolContext.state`` key: ask before every write, even in the workspace (ACP's Ask mode).
REVIEW_KEY = "files.review_writes"


class Need(enum.Enum):
    """What an access needs: nothing, the user's yes, or it is refused."""

    FREE = "free"
    ASK = "needs approval"
    REFUSE = "refused"


@dataclass(frozen=True)
class Decision:
    """The guard's answer for one path and one kind of access."""

    given: str
    lexical: Path
    #: The file the access really touches (every symlink followed): use it.
    real: Path
    need: Need
    #: REFUSE: the whole message for the model. ASK: why the user is asked.
    reason: str = ""
    #: What protects it: a PathKind value, "system", "outside", or an extra rule.
    key: str = ""
    #: The path as shown to the model and the user (``given (= real)``).
    shown: str = ""
    #: A secret that ``files.allow_secret_paths`` lets through (never quote it in errors).
    secret: bool = False

    @property
    def always_offered(self) -> bool:
        """Whether "always" (this file, the rest of the session) is offered."""
        return self.key in ("system", "outside", "review")


# --- what the refusals call things ------------------------------------------------

_HERMES_SECRET_WHAT = {
    home.ENV_FILE: "hermes' secrets file (.env with API keys and tokens)",
    home.AUTH_FILE: "hermes' credential store (auth.json)",
    home.MCP_TOKENS_DIR: "an MCP OAuth token file (mcp-tokens/)",
    home.CHECKPOINTS_DIR: "hermes' checkpoints of workspaces (checkpoints/, copies of files)",
}
#: Names for the entries of places.HOME_SECRETS (any other entry gets a generic name).
_STORE_WHAT = {
    ".aws/credentials": "AWS credentials (~/.aws/credentials)",
    ".aws/sso/cache": "AWS SSO tokens (~/.aws/sso/cache/)",
    ".config/gcloud": "Google Cloud credentials (~/.config/gcloud/)",
    ".azure": "Azure credentials (~/.azure/)",
    ".gnupg": "GnuPG keys (~/.gnupg/)",
    ".netrc": "a .netrc file (login passwords for hosts)",
    ".git-credentials": "git's stored credentials (.git-credentials)",
    ".pgpass": "PostgreSQL passwords (.pgpass)",
    ".pypirc": "PyPI upload credentials (.pypirc)",
    ".docker/config.json": "Docker registry credentials (~/.docker/config.json)",
    ".kube/config": "a Kubernetes credentials file (~/.kube/config)",
    ".config/gh/hosts.yml": "GitHub CLI tokens (~/.config/gh/hosts.yml)",
    ".password-store": "a pass password store (~/.password-store/)",
    ".local/share/keyrings": "the desktop keyring (~/.local/share/keyrings/)",
}
#: ``(entry, "/entry/")``: an entry of places.HOME_SECRETS as whole components of a path.
_STORE_NEEDLES = tuple(
    (entry, "/" + entry.casefold().strip("/") + "/") for entry in places_module.HOME_SECRETS
)
_SYSTEM_SECRET_WHAT = "the system password hashes (or their backup)"
#: Rules of this guard beyond places.py: (path, what, refused for reads too).
_SYSTEM_EXTRA: dict[str, tuple[str, bool]] = {
    "/etc/passwd": ("the system user database", False),
    "/etc/group": ("the system group database", False),
    "/etc/sudoers": ("the sudo configuration", True),
    "/etc/sudoers.d": ("the sudo configuration (/etc/sudoers.d)", True),
}
_PROC_SECRETS = {"environ": "a process's environment (it holds API keys)", "mem": "process memory"}
_KEY_SUFFIXES = (".key", ".p12", ".pfx")
_SSH_KEY = "an SSH private key"
_PRIVATE_KEY = "a private key"

_GATE_WHAT = {
    home.CONFIG_FILE: (
        "hermes' own configuration (config.yaml), which holds its approval settings"
    ),
    home.MANAGED_MARKER: ("the marker that hands hermes' own configuration to NixOS (.managed)"),
}
_HARD_TAIL = {
    PathKind.GATE: (
        "The agent may not change its own configuration or approvals; the user can, with "
        "`hermes config set KEY VALUE` or `hermes config edit`."
    ),
    PathKind.CODE: (
        "The agent may not change hermes itself, its code or the Python environment it runs "
        "in, and no setting allows it; tell the user what you wanted to change and why."
    ),
    PathKind.STATE: (
        "Only hermes' own tools change it: the memory and skills tools (which ask the user "
        "where memory.write_approval says so); no setting allows other writes."
    ),
    PathKind.SECRET: (
        "hermes' own credentials never pass through the conversation, and no setting changes "
        "that; the user manages them with `hermes setup` or by editing the file themselves."
    ),
}
_ASK_WHY = {
    PathKind.PERSONA.value: (
        "it is hermes' persona file ({name}), which enters the system prompt of every later session"
    ),
    PathKind.STARTUP.value: (
        "it is a file that shells, logins, ssh, git or the desktop run or trust later "
        "(a start-up file)"
    ),
    "system": "it is a system path, outside the workspace",
    "outside": "it is outside the workspace ({workspace})",
}

# A PEM private key: the BEGIN line at the start of a line, then key material
# (so a document that merely mentions the header is not mistaken for a key).
_PEM_PRIVATE = re.compile(
    rb"(?m)^-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[ \t\r]*$"
    rb"[\s\S]{0,400}?[A-Za-z0-9+/]{40}"
)
_SNIFF_BYTES = 1 << 20
#: Directories skipped when hermes' code is searched for hard links: environments,
#: caches and version control, which are large and never hermes' code itself.
_CODE_SKIP = frozenset(
    {".venv", "venv", ".git", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
    | {".pytest_cache", ".cache", ".tox", ".nox"}
)
#: At most this many directory entries are looked at to find a hard link's other names.
_LINK_SEARCH_BUDGET = 200_000


def _lexical(path: str | os.PathLike[str], cwd: str) -> Path:
    """``path`` made absolute against ``cwd`` with ``~`` expanded, ``..`` folded, links kept."""
    return Path(places_module.norm(os.path.join(cwd, os.path.expanduser(os.fspath(path)))))


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path | str, root: Path | str) -> bool:
    path, root = str(path), str(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _walk(root: str, skip: frozenset[str] = frozenset()) -> Iterator[os.DirEntry[str]]:
    """Every entry under ``root`` (symlinks not followed; ``skip`` names not entered)."""
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            yield entry
            try:
                if entry.is_dir(follow_symlinks=False) and entry.name not in skip:
                    stack.append(entry.path)
            except OSError:
                continue


class Guard:
    """The guard for one workspace and configuration; checks many paths cheaply.

    :meth:`decide` gives the decision for one access; :meth:`refusal` and
    :meth:`check` are the short forms for reads (and for writes that must not
    ask). :func:`guard_for` builds one from a tool call's context.
    """

    def __init__(
        self, cwd: str, allow: Iterable[str] | None = None, *, writable: Iterable[str] = ()
    ) -> None:
        self.cwd = cwd
        self.places: Places = places_module.places()
        self.workspace = _real(cwd)
        self.writable = [_real(os.path.expanduser(w)) for w in writable if w.strip()]
        scratch = {tempfile.gettempdir(), *places_module.SCRATCH_DIRS}
        self.scratch = sorted({str(_real(s)) for s in scratch} | scratch)
        home = self.places.home
        # (A service account's HOME may be "/": that is no home to keep apart.)
        self.homes = sorted({home, str(_real(home))} - {"/"})
        # Paths are compared case-folded: on a case-insensitive file system (macOS)
        # ~/.HERMES/Config.yaml is config.yaml, and realpath does not say so.
        # Each place with a "/" after it: a path is in it when path + "/" starts so.
        table = [(place.casefold().rstrip("/") + "/", kind) for place, kind in self.places.table]
        self._secret_places = tuple(p for p, kind in table if kind is PathKind.SECRET)
        self._other_places = tuple((p, kind) for p, kind in table if kind is not PathKind.SECRET)
        # hermes' own secrets, spelled and resolved: no setting lifts their protection.
        self._hermes_secrets: list[tuple[str, str]] = []
        for hermes_home in self.places.hermes_homes:
            for name in places_module.HERMES_SECRETS:
                spelled = os.path.join(hermes_home, name)
                for form in {spelled, str(_real(spelled))}:
                    self._hermes_secrets.append((form.casefold(), _HERMES_SECRET_WHAT[name]))
        self._allow = [self._allow_entry(entry) for entry in allow or () if entry]
        self._secret_inodes: dict[tuple[int, int], tuple[str, bool]] | None = None
        self._place_inodes: dict[tuple[int, int], str] | None = None
        self._workspace_persona = {path.casefold() for path in places_module.workspace_persona(cwd)}
        #: The session's tool state (denials of this turn, review mode); set by guard_for.
        self.state: dict[str, Any] = {}

    def _allow_entry(self, entry: str) -> tuple[str, Path | None]:
        lexical = _lexical(entry, self.cwd)
        if any(ch in entry for ch in "*?["):
            return str(lexical), None
        return str(lexical), _real(lexical)

    # --- resolving ------------------------------------------------------------------

    def resolve(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """``(lexical, real)`` forms of ``path``; a clear error for an unusable one."""
        raw = os.fspath(path)
        if not raw.strip():
            raise ToolError("the path is empty")
        if "\0" in raw:
            raise ToolError("the path contains a NUL character")
        lexical = _lexical(raw, self.cwd)
        return lexical, _real(lexical)

    # --- secrets --------------------------------------------------------------------

    def _secret(self, path: Path, *, write: bool) -> tuple[str, bool] | None:
        """``(what, hermes' own)`` when ``path`` names a secret for this access."""
        text = str(path).casefold()
        for place, what in self._hermes_secrets:
            if _within(text, place):
                return what, True
        parts = tuple(part.casefold() for part in path.parts)
        bounded = text.rstrip("/") + "/"
        for entry, needle in _STORE_NEEDLES:
            if needle in bounded:  # The entry's components, anywhere in the path.
                return _STORE_WHAT.get(entry, f"a credential store (~/{entry})"), False
        if len(parts) > 2 and parts[-2] == ".ssh" and not SSH_PUBLIC.fullmatch(parts[-1]):
            return _SSH_KEY, False  # Anyone's .ssh directory, not only this HOME's.
        if any(bounded.startswith(place) for place in self._secret_places):
            if text in places_module.SYSTEM_SECRETS:
                return _SYSTEM_SECRET_WHAT, False
            return "a secret", False
        for place, (what, read_too) in _SYSTEM_EXTRA.items():
            if _within(text, place) and (write or read_too):
                return what, False
        if parts[-1].endswith(_KEY_SUFFIXES):
            return _PRIVATE_KEY, False
        if len(parts) > 2 and parts[1] == "proc" and parts[-1] in _PROC_SECRETS:
            return _PROC_SECRETS[parts[-1]], False
        return None

    def _content_secret(self, real: Path, *, write: bool) -> tuple[str, bool] | None:
        """Secrets that need the file itself: a hard link to one, a private key inside."""
        try:
            info = real.stat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_nlink > 1:
            found = self._secret_links().get((info.st_dev, info.st_ino))
            if found is not None:
                return found
        if write and real.suffix.lower() != ".pem":
            return None  # Writing over a key with another name was refused by name already.
        try:
            with real.open("rb") as handle:
                head = handle.read(min(info.st_size + 1, _SNIFF_BYTES))
        except OSError:
            return None  # The access itself will fail with a clear error.
        if b"PRIVATE KEY" in head and _PEM_PRIVATE.search(head):
            return _PRIVATE_KEY, False
        return None

    def _secret_links(self) -> dict[tuple[int, int], tuple[str, bool]]:
        """The inodes of every secret file that exists, and what it is."""
        if self._secret_inodes is None:
            self._secret_inodes = {}
            candidates = [*self.places.secrets, *_SYSTEM_EXTRA]
            for place in candidates:
                self._record_inodes(place)
        return self._secret_inodes

    def _record_inodes(self, place: str) -> None:
        assert self._secret_inodes is not None
        paths: Iterable[str] = [place]
        if os.path.isdir(place):
            paths = (entry.path for entry in _walk(place))
        for path in paths:
            try:
                info = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found = self._secret(Path(path), write=False) or self._secret(
                    _real(path), write=False
                )
                self._secret_inodes.setdefault(
                    (info.st_dev, info.st_ino), found or ("a secret", False)
                )

    def allowed(self, lexical: Path, real: Path) -> bool:
        """Whether the user listed this path in ``files.allow_secret_paths``."""
        for pattern, resolved in self._allow:
            if resolved is None:
                if fnmatch.fnmatchcase(str(real), pattern) or fnmatch.fnmatchcase(
                    str(lexical), pattern
                ):
                    return True
            elif _within(real, resolved) or _within(lexical, pattern):
                return True
        return False

    # --- protected places ------------------------------------------------------------

    def _kind(self, path: Path) -> PathKind | None:
        """The strongest kind of place ``path`` is in, secrets aside (handled before:
        ``~/.ssh/id_ed25519`` that the allow list lets through is still in ``~/.ssh``)."""
        bounded = str(path).casefold().rstrip("/") + "/"
        for place, kind in self._other_places:  # Strongest kind first.
            if bounded.startswith(place):
                return kind
        return None

    def _aliases(self, real: Path) -> list[Path]:
        """``real`` spelled from a protected place that it, or a directory above it,
        *is* (same device and inode) under another name: a bind mount of HERMES_HOME
        in the workspace, another spelling on a case-insensitive file system."""
        if self._place_inodes is None:
            self._place_inodes = {}
            for place, _ in self.places.table:
                try:
                    info = os.stat(place)
                except OSError:
                    continue
                self._place_inodes.setdefault((info.st_dev, info.st_ino), place)
        aliases: list[Path] = []
        for above in (real, *real.parents):
            try:
                info = os.stat(above)
            except OSError:
                continue
            same = self._place_inodes.get((info.st_dev, info.st_ino))
            if same is not None and same != str(above):
                aliases.append(Path(same) / real.relative_to(above))
        return aliases

    def _linked_protected(self, real: Path) -> PathKind | None:
        """The kind of protected file ``real`` is another name of (a hard link), or None."""
        try:
            info = real.stat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_nlink < 2:
            return None
        wanted = (info.st_dev, info.st_ino)
        budget = _LINK_SEARCH_BUDGET
        p = self.places
        roots: list[tuple[str, PathKind, frozenset[str]]] = [
            *((place, PathKind.GATE, frozenset()) for place in p.gate),
            *((place, PathKind.PERSONA, frozenset()) for place in p.persona),
            *((place, PathKind.STATE, frozenset()) for place in p.hermes_homes),
            *((place, PathKind.STARTUP, frozenset()) for place in p.startup),
            *((place, PathKind.CODE, _CODE_SKIP) for place in self._code_roots()),
        ]
        for root, kind, skip in roots:
            try:
                top = os.stat(root)
            except OSError:
                continue
            if top.st_dev != info.st_dev:
                continue  # Hard links never cross file systems.
            if (top.st_dev, top.st_ino) == wanted:
                return kind
            if not stat.S_ISDIR(top.st_mode):
                continue
            for entry in _walk(root, skip):
                budget -= 1
                if budget < 0:
                    return kind  # Not ruled out within the budget: the safe answer.
                try:
                    if entry.inode() == info.st_ino and entry.is_file(follow_symlinks=False):
                        return kind
                except OSError:
                    continue
        return None

    def _code_roots(self) -> list[str]:
        """hermes' code to search for hard links: its package, checkout and scripts."""
        import hermes_agent

        roots = [str(Path(hermes_agent.__file__).resolve().parent)]
        roots += [
            place
            for place in self.places.code
            if os.path.isfile(place)
            or os.path.isfile(os.path.join(place, "pyproject.toml"))
            or os.path.basename(place) in ("bin", "Scripts")
        ]
        return roots

    # --- deciding --------------------------------------------------------------------

    def _shown(self, given: str, real: Path) -> str:
        shown = given
        if shown != str(real):
            shown += f" (= {real})"
        return shown

    def decide(self, path: str | os.PathLike[str], *, write: bool) -> Decision:
        """What reading or writing ``path`` needs (see the module docstring), then what
        the session adds: a write the user denied earlier in the turn stays refused
        (:mod:`hermes_agent.safety.denials`), and a session that reviews every edit
        (``files.review_writes`` in its state: an editor in its "Ask" mode) asks for
        writes that would otherwise be free."""
        decision = self._decide(path, write=write)
        if not write or decision.need is Need.REFUSE:
            return decision
        from dataclasses import replace

        from hermes_agent.safety import denials

        held = denials.path_refusal(self.state, decision.real)
        if held is not None:
            return replace(decision, need=Need.REFUSE, reason=held, key="denied")
        if decision.need is Need.FREE and self.state.get(REVIEW_KEY):
            why = "the session asks before every edit (the editor's Ask mode)"
            return replace(decision, need=Need.ASK, reason=why, key="review")
        return decision

    def _decide(self, path: str | os.PathLike[str], *, write: bool) -> Decision:
        given = os.fspath(path)
        lexical, real = self.resolve(given)
        shown = self._shown(given, real)
        verb = "write" if write else "read"

        def refuse(what: str, tail: str, key: str) -> Decision:
            message = f"refused to {verb} {shown}: it is {what}. {tail}"
            return Decision(given, lexical, real, Need.REFUSE, message, key, shown)

        forms = [real, lexical, *self._aliases(real)]
        secret = next(
            (found for form in forms if (found := self._secret(form, write=write))), None
        ) or self._content_secret(real, write=write)
        if secret is not None:
            what, hermes_own = secret
            if hermes_own:
                return refuse(what, _HARD_TAIL[PathKind.SECRET], PathKind.SECRET.value)
            if not self.allowed(lexical, real):
                tail = (
                    f"The credential guard keeps secrets out of the conversation. If the user "
                    f"wants the agent to {verb} it, they can allow the path in config.yaml under "
                    f"`{ALLOW_KEY}` (e.g. `hermes config set {ALLOW_KEY} '[\"{real}\"]'`)."
                )
                return refuse(what, tail, PathKind.SECRET.value)
        lifted = secret is not None  # A secret the user's allow list lets through.

        def free() -> Decision:
            return Decision(given, lexical, real, Need.FREE, shown=shown, secret=lifted)

        if not write:
            return free()

        kinds = {self._kind(form) for form in forms}
        if any(str(form).casefold() in self._workspace_persona for form in forms):
            kinds.add(PathKind.PERSONA)  # The prompt reads the workspace's before HERMES_HOME's.
        if any(places_module.in_git_dir(str(form)) for form in (real, lexical)):
            kinds.add(PathKind.STARTUP)  # git runs hooks and config from there, unconfined.
        for kind in (PathKind.GATE, PathKind.CODE, PathKind.STATE):
            if kind in kinds:
                return refuse(self._what(kind, real, lexical), _HARD_TAIL[kind], kind.value)
        linked = self._linked_protected(real)
        if linked is not None:
            what = f"another name (a hard link) of a protected file ({linked.value})"
            tail = "Writes through hard links to protected files are never made."
            return refuse(what, tail, "hard link")

        def ask(key: str) -> Decision:
            why = _ASK_WHY[key].format(name=real.name, workspace=self.workspace)
            return Decision(given, lexical, real, Need.ASK, why, key, shown, lifted)

        for kind in (PathKind.PERSONA, PathKind.STARTUP):
            if kind in kinds:
                return ask(kind.value)
        if _within(real, self.workspace) and str(self.workspace) != "/":
            return free()
        if any(_within(real, w) for w in self.writable):
            return free()
        if any(_within(real, h) for h in self.homes):
            return ask("outside")  # The home directory is never scratch space.
        if any(_within(real, s) for s in self.scratch):
            return free()
        if places_module.is_system(str(real)):
            return ask("system")
        return ask("outside")

    def _what(self, kind: PathKind, real: Path, lexical: Path) -> str:
        if kind is PathKind.GATE:
            for path in (real, lexical):
                if path.name in _GATE_WHAT and str(path.parent) in self.places.hermes_homes:
                    return _GATE_WHAT[path.name]
            return "hermes' own configuration"
        if kind is PathKind.CODE:
            return "hermes' own code or the Python environment it runs in"
        return "hermes' own state (HERMES_HOME)"

    def opened(self, decision_path: Path, info: os.stat_result, head: bytes) -> str | None:
        """Why the file really opened for ``decision_path`` must not be read, or None.

        The decision was made on the name; this looks at what was opened (its
        inode and its first bytes), so a hard link or a private key put there
        after the check is still caught.
        """
        found: tuple[str, bool] | None = None
        if info.st_nlink > 1:
            found = self._secret_links().get((info.st_dev, info.st_ino))
        if found is None and b"PRIVATE KEY" in head and _PEM_PRIVATE.search(head):
            found = (_PRIVATE_KEY, False)
        if found is None:
            return None
        what, hermes_own = found
        if not hermes_own and self.allowed(decision_path, decision_path):
            return None
        return f"refused to read {decision_path}: it is {what} (checked on the opened file)"

    def recheck(self, decision: Decision) -> None:
        """Raise :class:`ToolError` unless ``decision`` still holds for its path.

        A question can take minutes; a symlink swapped meanwhile (by a
        background command) must not send the approved write elsewhere.
        """
        again = self.decide(decision.given, write=True)
        if again.real != decision.real or again.need is not decision.need:
            raise ToolError(
                f"{decision.given} changed while the user was being asked (it now leads to "
                f"{again.real}); nothing was written"
            )

    # --- short forms -----------------------------------------------------------------

    def refusal(self, path: str | os.PathLike[str], *, write: bool) -> str | None:
        """Why the access is refused (the whole message), or None when it may go ahead
        (for a write: perhaps after asking the user; see :meth:`decide`)."""
        decision = self.decide(path, write=write)
        return decision.reason if decision.need is Need.REFUSE else None

    def check(self, path: str | os.PathLike[str], *, write: bool) -> Path:
        """The resolved path to use, or :class:`ToolError` with the reason.

        For a write that needs the user's approval this refuses too (it cannot
        ask): tools that write use :meth:`decide` and :func:`confirm`.
        """
        decision = self.decide(path, write=write)
        if decision.need is Need.REFUSE:
            raise ToolError(decision.reason)
        if decision.need is Need.ASK:
            raise ToolError(
                f"writing {decision.shown} needs the user's approval: {decision.reason}"
            )
        return decision.real


def guard_for(ctx: ToolContext) -> Guard:
    """The guard for a tool call's workspace and configuration."""
    allow = [str(entry) for entry in ctx.config.get(ALLOW_KEY) or ()]
    writable = [str(entry) for entry in ctx.config.get(WRITABLE_KEY) or ()]
    guard = Guard(ctx.cwd, allow, writable=writable)
    guard.state = ctx.state
    return guard


def check_path(path: str | os.PathLike[str], ctx: ToolContext, *, write: bool) -> Path:
    """Resolve ``path`` (relative to ``ctx.cwd``; ``~``, ``..`` and symlinks followed)
    and return it, or raise :class:`ToolError` naming the path, why it is
    protected, and how the user can allow it.

    Use the returned path for the actual access: it is the file that was
    checked, so writing through a symlink changes its target, not the link.
    """
    return guard_for(ctx).check(path, write=write)


# --- asking and recording ---------------------------------------------------------------


def _record(ctx: ToolContext, decision: Decision, tool: str, outcome: str, by: str) -> None:
    """One line in ``logs/approvals.jsonl``, as the terminal's gate writes them."""
    from hermes_agent.safety.gate import audit

    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": ctx.session_id,
        "purpose": "file",
        "command": f"{tool} {decision.given}",
        "path": str(decision.real),
        "cwd": ctx.cwd,
        "depth": ctx.depth,
        "verdict": decision.need.value,
        "kind": decision.key,
        "reasons": [decision.reason],
        "decision": outcome,
        "by": by,
    }
    audit(record)


def enforce(ctx: ToolContext, decision: Decision, tool: str) -> None:
    """Raise the refusal (recorded in the audit log) when ``decision`` refuses."""
    if decision.need is not Need.REFUSE:
        return
    from hermes_agent.errors import HermesError

    # Refused either way; a broken log must not turn a refusal into a crash.
    with contextlib.suppress(OSError, ValueError, HermesError):
        _record(ctx, decision, tool, "refused", "policy")
    raise ToolError(decision.reason)


def check_read(ctx: ToolContext, guard: Guard, path: str) -> Path:
    """The file to read, or the refusal (recorded) as :class:`ToolError`."""
    decision = guard.decide(path, write=False)
    enforce(ctx, decision, "read")
    return decision.real


async def confirm(
    ctx: ToolContext, decision: Decision, tool: str, *, preview: str, added: str
) -> None:
    """Let a write go ahead, or raise :class:`ToolError` saying why not.

    Refused writes are refused; free ones return at once. One that needs
    approval asks the user (``ctx.ask``) with ``preview`` (what would be
    written, redacted) after the checks of its kind: ``added`` (the text the
    write adds) of a persona file must pass the same scan as a memory entry.
    Nobody to ask means no. Every decision is recorded in the audit log; a
    write whose approval cannot be recorded is not made.
    """
    enforce(ctx, decision, tool)
    if decision.need is Need.FREE:
        return
    from hermes_agent.errors import HermesError
    from hermes_agent.redact import redact
    from hermes_agent.safety import denials
    from hermes_agent.tools import untrusted, write_guard

    def decide(outcome: str, by: str) -> None:
        try:
            _record(ctx, decision, tool, outcome, by)
        except (OSError, ValueError, HermesError) as exc:
            raise ToolError(
                f"{decision.given} was not written: the decision could not be recorded in the "
                f"audit log ({exc}); fix HERMES_HOME/logs"
            ) from None

    if decision.key == PathKind.PERSONA.value:
        reason = write_guard.scan(added)
        if reason:
            decide("refused", "content scan")
            raise ToolError(f"refused to write {decision.shown}: {reason}")
    always: set[str] = ctx.state.setdefault(ALWAYS_KEY, set())
    if decision.always_offered and str(decision.real) in always:
        decide("allowed", "always")
        return
    sources = untrusted.turn_sources(ctx.state)
    warning = ""
    if sources:
        named = ", ".join(s[:80] for s in sources[:3])
        warning = (
            f"\nThis turn read untrusted content ({named}), which may have asked for this write."
        )
    choices = ["yes", "no", "always"] if decision.always_offered else ["yes", "no"]
    options = "yes = this once, no = do not write it"
    if decision.always_offered:
        options += ", always = this file, for the rest of the session"
    question = (
        f"The agent wants to {tool.replace('_', ' ')} {decision.shown}: {decision.reason}."
        f"{warning}\n{redact(preview)}\nAllow it? {options}."
    )
    answer = await ctx.ask(question, choices)
    normalized = (answer or "").strip().lower()
    if answer is None:
        denials.record_path(ctx.state, decision.real, f"writing {decision.real}")
        decide("denied", "nobody to ask")
        raise ToolError(
            f"denied: writing {decision.shown} needs the user's approval ({decision.reason}) and "
            "nobody is there to give it (a run without a terminal, or a scheduled job). Write "
            "inside the workspace instead, or tell the user what you wanted to write and where."
        )
    if normalized in ("always", "a") and decision.always_offered:
        always.add(str(decision.real))
        decide("allowed", "user (always)")
        return
    if normalized in ("yes", "y"):
        decide("allowed", "user")
        return
    denials.record_path(ctx.state, decision.real, f"writing {decision.real}")
    decide("denied", "user")
    raise ToolError(
        f"denied by the user: {decision.shown} was not written. Do not retry it; ask the user "
        "how they want to proceed."
    )
