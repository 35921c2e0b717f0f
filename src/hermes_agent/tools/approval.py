"""The approval chokepoint: every command the agent can cause to run passes here.

:func:`approve_command` is the one gate for the terminal tool, background jobs
and (later) commands that MCP servers are launched with. It classifies the
command with :func:`classify`, applies ``approvals.mode``, asks the user when
needed, writes one audit line per decision to ``HERMES_HOME/logs/approvals.jsonl``
and raises :class:`ToolError` (with the reason) when the command must not run.

How commands are understood
---------------------------
:func:`classify` parses the command with **tree-sitter-bash** (the bash
grammar used by editors and GitHub, MIT licensed, a compiled parser with
error recovery) into words and sub-commands, then walks the tree. Choices
that were weighed:

- ``bashlex`` is a port of bash's own yacc grammar, but it is GPLv3 (this
  project is MIT), pure Python (0.2-0.5 ms for ``ls -la``), and raises on
  everyday syntax (``[[ ... ]]``, ``$((...))``, ``case``, arrays), which would
  send ordinary commands to the user for approval.
- ``shlex`` with ``punctuation_chars`` only splits tokens: it knows nothing of
  ``$(...)``, backticks, here-documents, functions or nesting, so a hand-made
  parser on top of it would be a second, weaker bash grammar. It is kept as a
  fallback for input that tree-sitter cannot parse, only to escalate.

On the tree, words are evaluated the way bash would as far as that can be
known statically: quotes and escapes removed (``r''m``, ``\\rm``, ``"rm"``,
``$'\\x72m'``), brace expansion (``{rm,-rf,/}``), ``~``/``$HOME``, ``$IFS`` as
a word separator, variables assigned earlier in the same command, and the
output of simple pipelines (``echo ... | base64 -d``, ``xxd -r -p``, ``rev``,
``gunzip``) so that decoded text fed to a shell is parsed and checked too.
Wrappers are looked through (``sudo``, ``env``, ``xargs``, ``timeout``,
``nice``, ``nohup``, ``exec``, ``command``, ``time``, ``find -exec``, ...),
``bash -c``/``sh -c`` strings, ``eval``, aliases, ``trap`` and ``watch``
strings are parsed recursively, and programs are named by their basename
(``/usr/bin/sudo`` is ``sudo``). Anything whose meaning cannot be known
statically (a command name computed at run time, a string built at run time
given to a shell, input that does not parse) needs approval: nothing is
silently safe.

Verdicts: *safe* (runs without asking), *needs approval* (asks the user,
unless the mode or an earlier "always" allows it), *refused* (never runs,
whatever the mode: fork bombs, ``rm -rf /``/``~``/``/*``, writing to disk
devices, formatting devices, and any attempt to change hermes' own approval
settings or ``.env``: the agent cannot lift its own gate).
"""

from __future__ import annotations

import base64
import binascii
import enum
import fnmatch
import functools
import json
import os
import posixpath
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hermes_agent.tools.registry import ToolContext, ToolError

if TYPE_CHECKING:
    from tree_sitter import Node, Parser


class Level(enum.IntEnum):
    """How dangerous a command is; a command's level is the highest of its findings."""

    SAFE = 0
    APPROVAL = 1
    REFUSED = 2

    @property
    def label(self) -> str:
        return ("safe", "needs approval", "refused")[self]


@dataclass(frozen=True)
class Finding:
    """One reason a command is not simply safe."""

    level: Level
    reason: str
    #: What an "always" answer remembers for the session, and what names the
    #: finding in the audit log. Opaque cases use ``exact:<command>`` so that
    #: "always" only ever repeats the very same command.
    key: str
    #: The sub-command the finding was made in (static words), matched against
    #: ``approvals.allow`` in smart mode.
    argv: tuple[str, ...] = ()
    #: Touches hermes' own secrets or state: never pre-approved by the allow-list.
    gate: bool = False


@dataclass(frozen=True)
class Verdict:
    """What :func:`classify` found: the level, the reasons and the sub-commands."""

    command: str
    level: Level
    findings: tuple[Finding, ...]
    #: Every simple command found (after unwrapping), as its words.
    commands: tuple[tuple[str, ...], ...]
    #: False when the parser reported a syntax error (the verdict is then at least
    #: "needs approval").
    parsed: bool = True

    @property
    def safe(self) -> bool:
        return self.level is Level.SAFE

    @property
    def needs_approval(self) -> bool:
        return self.level is Level.APPROVAL

    @property
    def refused(self) -> bool:
        return self.level is Level.REFUSED

    @property
    def reasons(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for f in sorted(self.findings, key=lambda f: -f.level):
            seen.setdefault(f.reason, None)
        return tuple(seen)


# --- fields: the words of a command as bash would see them -------------------------------

#: Stands for a part of a word whose value is only known when the command runs.
UNKNOWN = "\x00"
_GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)
class Field:
    """One word after expansion; ``text`` holds UNKNOWN where the value is not known."""

    text: str
    raw: str
    dynamic: bool = False

    @property
    def shown(self) -> str:
        return self.raw if self.dynamic else self.text


def _static(text: str) -> Field:
    return Field(text, text)


_BRACE = re.compile(r"\{([^{}]*,[^{}]*)\}")
_UNQUOTED_ESCAPE = re.compile(r"\\(.)", re.S)
_DQ_ESCAPE = re.compile(r"\\([\\\"$`\n])")


def brace_expand(text: str, limit: int = 256) -> list[str]:
    """Bash brace expansion of comma lists (``{rm,-rf,/}``, ``file{,.bak}``)."""
    out = [text]
    for _ in range(8):
        changed = False
        nxt: list[str] = []
        for item in out:
            m = _BRACE.search(item)
            if m is None:
                nxt.append(item)
                continue
            changed = True
            nxt.extend(item[: m.start()] + alt + item[m.end() :] for alt in m.group(1).split(","))
        out = nxt[:limit]
        if not changed:
            break
    return out


def _unescape_unquoted(text: str) -> str:
    return _UNQUOTED_ESCAPE.sub(lambda m: "" if m.group(1) == "\n" else m.group(1), text)


def _unescape_dq(text: str) -> str:
    return _DQ_ESCAPE.sub(lambda m: "" if m.group(1) == "\n" else m.group(1), text)


_ANSI_SIMPLE = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "e": "\x1b",
    "E": "\x1b",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_ANSI = re.compile(
    r"\\(x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[0-7]{1,3}|c.|.)", re.S
)


def decode_ansi_c(body: str) -> str:
    """Decode the inside of ``$'...'``."""

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        head = esc[0]
        if head in "xuU" and len(esc) > 1:
            return chr(int(esc[1:], 16))
        if head.isdigit():
            return chr(int(esc, 8) & 0xFF)
        if head == "c" and len(esc) == 2:
            return chr(ord(esc[1]) & 0x1F)
        return _ANSI_SIMPLE.get(esc, "\\" + esc)

    return _ANSI.sub(one, body)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _word_tuple(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --- paths --------------------------------------------------------------------------------

_SYSTEM_DIRS = _word_tuple(
    """
    /etc /usr /bin /sbin /lib /lib32 /lib64 /libx32 /boot /sys /proc /dev /var /opt /srv
    /snap /nix /System /Library /Applications /private/etc /private/var
    """
)
_NOT_SYSTEM = ("/var/tmp", "/var/folders", "/dev/shm", "/private/var/folders", "/private/tmp")
_SAFE_DEVICES = _word_set(
    """
    /dev/null /dev/zero /dev/tty /dev/stdout /dev/stderr /dev/stdin /dev/random /dev/urandom
    /dev/full
    """
)
_DISK_DEVICE = re.compile(
    r"^/dev/(sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|rdisk\d|md\d|dm-\d|"
    r"mapper/|loop\d|sr\d|nbd\d|zd\d|root$|disk/)"
)
_CATASTROPHIC_NAMES = _word_tuple(
    """
    / /home /root /Users /etc /usr /bin /sbin /lib /lib32 /lib64 /boot /var /opt /dev /proc
    /sys /srv /mnt /media /snap /nix /nix/store /System /Library /Applications
    """
)
#: Files that shells, ssh, git and friends run or trust: writing them needs approval.
_USER_CONFIG_NAMES = _word_set(
    """
    .bashrc .bash_profile .bash_login .bash_logout .profile .zshrc .zprofile .zshenv .zlogin
    .zlogout .kshrc .cshrc .tcshrc .inputrc .xinitrc .xprofile .xsession .pam_environment
    .gitconfig .git-credentials .netrc .npmrc .pypirc .pgpass .Xauthority .envrc
    authorized_keys known_hosts
    """
)
_USER_CONFIG_DIRS = _word_set(
    """
    .ssh .gnupg .aws .kube .docker autostart LaunchAgents environment.d
    """
)
_CREDENTIAL_RE = re.compile(
    r"(^|/)(\.ssh/(id_[^/]*|[^/]*_key)(?<!\.pub)$|\.aws/credentials$|\.netrc$|\.git-credentials$|"
    r"\.docker/config\.json$|\.kube/config$|\.pgpass$|\.gnupg/|etc/(g?shadow|sudoers)$)"
)
_CREDENTIAL_HINTS = _word_tuple(
    ".ssh shadow sudoers .aws .netrc credentials .docker .kube .pgpass .gnupg"
)

#: HERMES_HOME entries, by what touching them means.
_HERMES_GATE = {".env": "env", "config.yaml": "config", "logs/approvals.jsonl": "audit"}
_HERMES_SECRET = {"auth.json": "auth", "mcp-tokens": "tokens"}
_HERMES_NAMES = {**_HERMES_GATE, **_HERMES_SECRET}
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

    home = _norm(home_env or os.path.expanduser("~"))
    homes: list[str] = []
    actual = str(home_module.hermes_home())
    for candidate in (actual, os.path.realpath(actual), posixpath.join(home, ".hermes")):
        candidate = _norm(candidate)
        if candidate not in homes:
            homes.append(candidate)
    protected = tuple((f"{h}/{name}", kind) for h in homes for name, kind in _HERMES_NAMES.items())
    prefixes = [*homes, "~/.hermes", "/.hermes", "$HERMES_HOME", "${HERMES_HOME}"]
    spellings = tuple(
        (f"{p}/{name}", kind) for p in prefixes for name, kind in _HERMES_NAMES.items()
    )
    return _Places(home, tuple(homes), protected, spellings)


def _places() -> _Places:
    return _places_for(os.environ.get("HOME", ""), os.environ.get("HERMES_HOME", ""))


def _norm(path: str) -> str:
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _has_glob(text: str) -> bool:
    return UNKNOWN in text or any(c in _GLOB_CHARS for c in text)


def _pattern(text: str) -> str:
    return text.replace(UNKNOWN, "*")


def _static_prefix(text: str) -> str:
    for i, ch in enumerate(text):
        if ch in _GLOB_CHARS or ch == UNKNOWN:
            return text[:i]
    return text


# --- the parser ---------------------------------------------------------------------------

_local = threading.local()


def _parser() -> Parser | None:
    parser: Parser | None = getattr(_local, "parser", None)
    if parser is None:
        try:
            import tree_sitter_bash
            from tree_sitter import Language, Parser
        except ImportError:  # pragma: no cover - a broken install
            return None
        parser = Parser(Language(tree_sitter_bash.language()))
        _local.parser = parser
    return parser


# --- what commands are -------------------------------------------------------------------

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "tcsh", "csh", "rbash", "yash"}
    | {"posh", "ksh93", "pdksh", "oksh", "loksh", "elvish", "nu", "xonsh"}
)
INTERPRETERS = {
    # name: flags that take inline code
    "python": ("-c",),
    "pypy": ("-c",),
    "perl": ("-e", "-E"),
    "ruby": ("-e",),
    "node": ("-e", "--eval", "-p", "--print"),
    "nodejs": ("-e", "--eval", "-p", "--print"),
    "bun": ("-e", "--eval", "-p", "--print"),
    "deno": ("eval",),
    "php": ("-r",),
    "lua": ("-e",),
    "luajit": ("-e",),
    "Rscript": ("-e",),
    "osascript": ("-e",),
    "pwsh": ("-c", "-Command", "-command"),
    "powershell": ("-c", "-Command", "-command"),
    "tclsh": (),
    "jshell": (),
}
AWKS = _word_set("awk gawk mawk nawk busybox-awk")
DOWNLOADERS = _word_set("curl wget fetch aria2c http https xh lwp-request")
PRIVILEGE = _word_set("sudo doas su pkexec run0 runuser sudoedit calife")
#: Commands that only read (for deciding whether a mention of a protected file is a write).
READ_ONLY = _word_set(
    """
    cat head tail less more grep egrep fgrep rg ag ack wc ls dir stat file diff cmp md5sum
    sha1sum sha224sum sha256sum sha384sum sha512sum b2sum cksum echo printf test [ true false
    pwd cd pushd popd which type whereis realpath readlink dirname basename du df tree jq bat
    batcat column nl od hexdump strings tac fold fmt cut uniq paste comm join rev base64 base32
    zcat zless zgrep look env printenv id whoami date uname hostname
    """
)
#: systemctl verbs that only look.
_SYSTEMCTL_READ = _word_set(
    """
    status show cat list-units list-unit-files list-sockets list-timers list-jobs
    list-dependencies list-machines list-automounts list-paths is-active is-enabled
    is-failed is-system-running get-default help show-environment --version -h --help
    """
)
_PACKAGE_VERBS: dict[str, frozenset[str]] = {
    name: frozenset(verbs.split())
    for name, verbs in {
        "apt": "install remove purge autoremove autopurge upgrade full-upgrade dist-upgrade "
        "reinstall build-dep",
        "apt-get": "install remove purge autoremove autopurge upgrade dist-upgrade reinstall "
        "build-dep",
        "aptitude": "install remove purge upgrade safe-upgrade full-upgrade reinstall",
        "yum": "install remove erase update upgrade reinstall downgrade autoremove groupinstall "
        "groupremove localinstall",
        "dnf": "install remove erase update upgrade reinstall downgrade autoremove distro-sync "
        "swap groupinstall groupremove",
        "microdnf": "install remove update upgrade reinstall",
        "tdnf": "install remove erase update upgrade reinstall",
        "zypper": "install in remove rm update up dist-upgrade dup patch",
        "apk": "add del upgrade fix",
        "brew": "install uninstall remove rm upgrade reinstall link unlink tap untap cleanup "
        "autoremove",
        "port": "install uninstall upgrade",
        "snap": "install remove refresh revert",
        "flatpak": "install uninstall remove update",
        "pkg": "install delete remove upgrade",
        "pip": "install uninstall",
        "pipx": "install uninstall uninstall-all reinstall reinstall-all upgrade upgrade-all "
        "inject runpip",
        "npm": "install i in ins inst insta instal isnt isnta isntal add ci uninstall remove "
        "rm r un unlink update up upgrade link ln",
        "pnpm": "add install i remove rm uninstall un update up upgrade link ln",
        "yarn": "add remove install upgrade up global link",
        "bun": "add install i remove rm update link",
        "gem": "install uninstall update",
        "cargo": "install uninstall",
        "go": "install",
        "conda": "install remove uninstall update upgrade create",
        "mamba": "install remove uninstall update upgrade create",
        "micromamba": "install remove uninstall update create",
        "poetry": "add remove",
        "composer": "require remove global",
        "emerge": "",
        "cpan": "",
        "cpanm": "",
    }.items()
}
_PACKAGE_ANY = frozenset({"emerge", "cpan", "cpanm"})
#: Tools whose ``run``/``exec`` sub-command runs another command.
_RUNNERS = _word_set(
    "uv poetry pdm hatch pipenv conda mamba micromamba pixi rye pipx npm pnpm yarn bun"
)
_RUNNER_OPTIONS = (
    "--with",
    "--from",
    "--python",
    "--env-file",
    "--project",
    "--directory",
    "--package",
    "--name",
    "--prefix",
    "--group",
    "--extra",
    "--spec",
    "--cwd",
    "-C",
)
_ADMIN = _word_set(
    """
    useradd userdel usermod groupadd groupdel groupmod passwd chpasswd chage visudo vipw
    vigr swapon swapoff modprobe insmod rmmod setenforce chattr firewall-cmd
    update-alternatives update-grub grub-install efibootmgr losetup cryptsetup lvremove
    vgremove pvremove mdadm zpool zfs
    """
)
_FORMATTERS = _word_set(
    """
    mkfs mke2fs mkswap mkdosfs mkntfs mkexfatfs wipefs blkdiscard
    """
)
_PARTITIONERS = _word_set("fdisk sfdisk cfdisk gdisk sgdisk parted kpartx")
_POWER = _word_set("shutdown reboot halt poweroff suspend hibernate")
_KILLERS = _word_set("killall pkill skill slay killall5")

#: Inline code that runs programs, deletes files or decodes payloads.
_CODE_DANGER = re.compile(
    r"\b(system|popen|spawn\w*|fork|subprocess|check_output|check_call|getoutput|"
    r"getstatusoutput|rmtree|unlink|rmdir|removedirs|remove|rm_rf|rm_r|rmSync|unlinkSync|"
    r"rmdirSync|execSync|execFileSync|spawnSync|child_process|shell_exec|passthru|proc_open|"
    r"pcntl_exec|eval|exec[lv]?p?e?|__import__|import_module|b64decode|decodebytes|a2b_base64|"
    r"unhexlify|Runtime|ProcessBuilder|execute|kill|killpg|chmod|chown|truncate|qx)\b|`|%x[{(\[]"
)
_AWK_DANGER = re.compile(r"\bsystem\s*\(|\|\s*&|\|\s*getline|\bprintf?\b[^;}]*\||>")
_SED_DANGER = re.compile(
    r"(^|[;\n{}])\s*[0-9,$/\\!]*\s*(e\b|[wW]\s)|s(.).*?\3.*?\3[gipmMI0-9]*[ew]", re.S
)
_GIT_EXEC_KEY = re.compile(
    r"^(alias\.|core\.(pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy)|"
    r"sequence\.editor|diff\.external|credential\.|gpg\.|uploadpack\.|protocol\.|"
    r".*\.(textconv|command|cmd|helper|program|clean|smudge|process|path)$)",
    re.I,
)
_DANGEROUS_ENV = _word_set(
    """
    LD_PRELOAD LD_AUDIT LD_LIBRARY_PATH DYLD_INSERT_LIBRARIES BASH_ENV ENV PROMPT_COMMAND
    SHELLOPTS BASHOPTS PS4 IFS GIT_SSH_COMMAND GIT_SSH GIT_EXTERNAL_DIFF GIT_PAGER
    GIT_EDITOR GIT_ASKPASS PAGER EDITOR VISUAL PERL5OPT NODE_OPTIONS PYTHONSTARTUP
    HERMES_HOME
    """
)

_VERSIONED = re.compile(r"^(python|pypy|pip|perl|ruby|node|php|lua|pydoc|idle)[0-9.]*$")


def canonical_name(word: str) -> str:
    """The program a command word names: basename, versions dropped (``python3.11``)."""
    base = word.rsplit("/", 1)[-1] if "/" in word else word
    m = _VERSIONED.match(base)
    if m:
        return m.group(1)
    if base.startswith("mkfs."):
        return "mkfs"
    return base


# --- option scanning ----------------------------------------------------------------------


def _operands(
    args: Sequence[Field],
    *,
    noarg: str = "",
    witharg: str = "",
    long_witharg: Iterable[str] = (),
    stop_at_first: bool = True,
) -> tuple[list[int], bool]:
    """Indices of operands in ``args`` (skipping options), and whether that was certain.

    With ``stop_at_first`` (commands that take a command after their options),
    scanning stops at the first operand. An option this table does not know
    makes the answer uncertain: its argument may have been taken for an operand.
    """
    long_with = frozenset(long_witharg)
    out: list[int] = []
    certain = True
    i, n = 0, len(args)
    while i < n:
        f = args[i]
        t = f.text
        if f.dynamic:
            out.append(i)
            certain = certain and not t.startswith("-")
            if stop_at_first:
                return out, False
            i += 1
            continue
        if t == "--":
            out.extend(range(i + 1, n) if not stop_at_first else [i + 1] if i + 1 < n else [])
            return out, certain
        if t.startswith("--") and len(t) > 2:
            key = t.split("=", 1)[0]
            if "=" not in t and key in long_with:
                i += 2
                continue
            i += 1
            continue
        if t.startswith("-") and len(t) > 1:
            skip_next = False
            for j, ch in enumerate(t[1:], 1):
                if ch in witharg:
                    skip_next = j == len(t) - 1
                    break
                if ch not in noarg:
                    certain = False
            i += 2 if skip_next else 1
            continue
        out.append(i)
        if stop_at_first:
            return out, certain
        i += 1
    return out, certain


def _cluster_has(args: Sequence[Field], letters: str, longs: Iterable[str] = ()) -> bool:
    """Whether any short-option cluster has one of ``letters``, or any long option matches."""
    long_set = frozenset(longs)
    for f in args:
        t = f.text
        if t == "--":
            return False
        if t.startswith("--"):
            if t.split("=", 1)[0] in long_set:
                return True
        elif (
            t.startswith("-")
            and len(t) > 1
            and not t[1].isdigit()
            and any(ch in letters for ch in t[1:])
        ):
            return True
    return False


# --- the analysis --------------------------------------------------------------------------

MAX_DEPTH = 8
_WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&", "&>|"})


@dataclass(slots=True)
class _Input:
    """What a command reads on standard input."""

    piped: bool = False
    data: bytes | None = None
    decoded: bool = False
    downloaded: bool = False
    source: str = "pipe"


@dataclass(slots=True)
class _Output:
    """What a command writes on standard output, when that can be known."""

    data: bytes | None = None
    decoded: bool = False
    downloaded: bool = False


_NO_INPUT = _Input()
_NO_OUTPUT = _Output()


@dataclass(slots=True)
class _Use:
    """How a command touches paths: its write targets, and whether it only reads."""

    read_only: bool = False
    writes: list[Field] = field(default_factory=list)
    #: Write targets are known exactly (cp, tee...): other mentions are reads.
    precise: bool = False
    #: Recursive delete/move/permission change: a home or root target is catastrophic.
    sweeping: bool = False


class _Analysis:
    """One classification: walks the tree, evaluates words, collects findings."""

    def __init__(self, command: str, cwd: str | None) -> None:
        self.command = command
        self.places = _places()
        self.findings: dict[tuple[str, str], Finding] = {}
        self.commands: dict[tuple[str, ...], None] = {}
        self.cwd: str | None = _norm(cwd) if cwd else None
        #: False once a `cd` went somewhere unknown: relative paths could be anywhere.
        self.cwd_known = True
        self.vars: dict[str, str | None] = {}
        self.vars_poisoned = False
        self.aliases: dict[str, str] = {}
        #: Files this command writes, with their content when it is known.
        self.files: dict[str, bytes | None] = {}
        self.depth = 0
        self.parsed = True
        self._substitutions: dict[tuple[int, int], _Output] = {}
        self._source = b""

    # --- findings -------------------------------------------------------------------

    def add(
        self,
        level: Level,
        reason: str,
        key: str | None = None,
        argv: Sequence[Field] = (),
        gate: bool = False,
    ) -> None:
        key = key or f"exact:{self.command}"
        if (reason, key) in self.findings:
            return
        words = tuple(f.text for f in argv if not f.dynamic)
        self.findings[(reason, key)] = Finding(level, reason, key, words, gate)

    # --- parsing --------------------------------------------------------------------

    def run(self) -> None:
        self.analyze_source(self.command)
        if "\\\n" in self.command:
            # Bash removes backslash-newline before it splits words; the grammar does
            # not always (``r\<newline>m`` is ``rm``). Check the joined text as well.
            self.analyze_source(self.command.replace("\\\n", ""))

    def analyze_source(self, text: str) -> None:
        if "\x00" in text:
            self.parsed = False
            self.add(Level.APPROVAL, "the command contains a NUL byte")
            text = text.replace("\x00", "")
        parser = _parser()
        if parser is None:  # pragma: no cover - tree-sitter-bash missing from the install
            self.parsed = False
            self.add(Level.APPROVAL, "the shell parser (tree-sitter-bash) is not installed")
            self._fallback(text)
            return
        source = text.encode("utf-8", "surrogateescape")
        tree = parser.parse(source)
        saved = self._source
        self._source = source
        try:
            root = tree.root_node
            if root.has_error:
                self.parsed = False
                self.add(
                    Level.APPROVAL,
                    "the command could not be parsed with certainty (a syntax error, or "
                    "syntax this check does not know)",
                )
                self._fallback(text)
            self.visit(root, _NO_INPUT)
        finally:
            self._source = saved

    def nested(self, text: str, what: str, *, same_scope: bool = False) -> None:
        """Check ``text`` as a command of its own (a ``bash -c`` string, an alias...)."""
        if self.depth >= MAX_DEPTH:
            self.add(Level.APPROVAL, f"{what} is nested too deeply to check")
            return
        self.depth += 1
        saved = (self.vars, self.cwd, self.cwd_known)
        if not same_scope:
            self.vars = dict(self.vars)
        try:
            self.analyze_source(text)
        finally:
            if not same_scope:
                self.vars, self.cwd, self.cwd_known = saved
            self.depth -= 1

    def _fallback(self, text: str) -> None:
        """Split unparseable text with shlex; only used to find refusals inside it."""
        import shlex

        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError:
            return
        argv: list[Field] = []
        redirect = False
        for token in [*tokens, ";"]:
            if token and set(token) <= set(";&|()"):
                if argv:
                    self.check_argv(argv, _NO_INPUT)
                argv, redirect = [], False
                continue
            if token and set(token) <= set("<>&"):
                redirect = ">" in token
                continue
            if redirect:
                self._redirect_target(">", self._expand_static(token), [])
                redirect = False
                continue
            argv.extend(self._expand_static(token))
        if argv:  # pragma: no cover - the sentinel flushes
            self.check_argv(argv, _NO_INPUT)

    def _expand_static(self, token: str) -> list[Field]:
        out = []
        for item in brace_expand(token) if "{" in token else [token]:
            out.append(self._tilde(Field(item, token)))
        return out

    # --- the tree --------------------------------------------------------------------

    def text_of(self, node: Node) -> str:
        return self._source[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")

    def visit(self, node: Node, stdin: _Input) -> _Output:
        kind = node.type
        if kind == "command":
            return self.simple_command(node, stdin, [])
        if kind == "pipeline":
            return self.pipeline(node.named_children, stdin)
        if kind == "redirected_statement":
            return self.redirected(node, stdin)
        if kind == "function_definition":
            self.function(node)
            return _NO_OUTPUT
        if kind == "variable_assignment":
            self.assignment(node)
            return _NO_OUTPUT
        if kind == "declaration_command":
            self.declaration(node)
            return _NO_OUTPUT
        if kind == "unset_command":
            for child in node.named_children:
                self.vars[self.text_of(child)] = None
            return _NO_OUTPUT
        if kind in ("command_substitution", "process_substitution"):
            self.substitution(node)
            return _NO_OUTPUT
        if kind == "for_statement":
            var = node.child_by_field_name("variable")
            if var is not None:
                self.vars[self.text_of(var)] = None
        if kind in ("comment", "heredoc_start", "heredoc_end"):
            return _NO_OUTPUT
        last = _NO_OUTPUT
        for child in node.named_children:
            last = self.visit(
                child, stdin if kind in ("subshell", "compound_statement") else _NO_INPUT
            )
        return last if kind in ("subshell", "compound_statement", "program") else _NO_OUTPUT

    def pipeline(self, stages: Sequence[Node], stdin: _Input) -> _Output:
        data = stdin
        out = _NO_OUTPUT
        for i, stage in enumerate(stages):
            if i > 0:
                data = _Input(True, out.data, out.decoded, out.downloaded or data.downloaded)
            out = self.visit(stage, data)
            out = _Output(out.data, out.decoded, out.downloaded or data.downloaded)
        return out

    def redirected(self, node: Node, stdin: _Input) -> _Output:
        body = node.child_by_field_name("body")
        redirects: list[Node] = []
        continuation: list[Node] = []
        here: _Input | None = None
        for child in node.named_children:
            if child is body or child == body:
                continue
            if child.type == "heredoc_redirect":
                here = self.heredoc(child)
                for part in child.named_children:
                    if part.type == "file_redirect":
                        redirects.append(part)
                    elif part.type not in ("heredoc_start", "heredoc_body", "heredoc_end"):
                        continuation.append(part)
            elif child.type == "herestring_redirect":
                here = self.herestring(child)
            else:
                redirects.append(child)
        if body is None:
            self.apply_redirects(redirects)
            return _NO_OUTPUT
        stdin_here = here or stdin
        if body.type == "command":
            out = self.simple_command(body, stdin_here, redirects)
        else:
            # The grammar hangs `cd x && echo > f`'s redirection on the whole list: check
            # it against the directory before the list and the one after it.
            before = (self.cwd, self.cwd_known)
            out = self.visit(body, stdin_here)
            extra = self.apply_redirects(redirects, out)
            if (self.cwd, self.cwd_known) != before:
                after = (self.cwd, self.cwd_known)
                self.cwd, self.cwd_known = before
                self.apply_redirects(redirects)
                self.cwd, self.cwd_known = after
            if extra:
                self.check_argv(extra, _NO_INPUT)
        for part in continuation:
            if part.type == "pipeline":
                # `cat <<EOF | sh`: the rest of the pipeline hangs under the here-document.
                first = _Input(True, out.data, out.decoded, out.downloaded)
                out2 = _NO_OUTPUT
                for i, stage in enumerate(part.named_children):
                    feed = first if i == 0 else _Input(True, out2.data, out2.decoded)
                    out2 = self.visit(stage, feed)
                out = out2
            else:
                self.visit(part, _NO_INPUT)
        return out

    def heredoc(self, node: Node) -> _Input:
        body = next((c for c in node.named_children if c.type == "heredoc_body"), None)
        if body is None:
            return _Input(True, b"", source="here-document")
        text = self.text_of(body)
        dynamic = False
        parts = [c for c in body.named_children if c.type != "heredoc_content"]
        if parts:
            pieces: list[str] = []
            pos = body.start_byte
            for part in parts:
                pieces.append(self._source[pos : part.start_byte].decode("utf-8", "replace"))
                fields = self.fields(part, quoted=True)
                value = " ".join(f.text for f in fields)
                dynamic = dynamic or any(f.dynamic for f in fields)
                pieces.append(value)
                pos = part.end_byte
            pieces.append(self._source[pos : body.end_byte].decode("utf-8", "replace"))
            text = "".join(pieces)
        return _Input(True, None if dynamic else text.encode(), source="here-document")

    def herestring(self, node: Node) -> _Input:
        fields: list[Field] = []
        for child in node.named_children:
            fields.extend(self.fields(child))
        if any(f.dynamic for f in fields):
            return _Input(True, None, source="here-string")
        return _Input(
            True, (" ".join(f.text for f in fields) + "\n").encode(), source="here-string"
        )

    def function(self, node: Node) -> None:
        name_node = node.child_by_field_name("name")
        body = node.child_by_field_name("body")
        name = self.text_of(name_node) if name_node is not None else ""
        if body is None:
            return
        self.visit(body, _NO_INPUT)
        calls_itself = False
        spawns = False
        stack = [body]
        while stack:
            n = stack.pop()
            if n.type == "command_name" and self.text_of(n) == name:
                calls_itself = True
            if n.type == "pipeline" or n.type == "&":
                spawns = True
            stack.extend(n.children)
        if calls_itself and spawns:
            self.add(
                Level.REFUSED,
                f"fork bomb: function {name!r} starts copies of itself without end",
                "fork bomb",
            )

    def assignment(self, node: Node, *, local: bool = False) -> None:
        name_node = node.child_by_field_name("name")
        value = node.child_by_field_name("value")
        name = self.text_of(name_node) if name_node is not None else ""
        fields = self.fields(value) if value is not None and value.type != "array" else []
        if value is not None and value.type == "array":
            for child in value.named_children:
                self.fields(child)
            self.vars[name] = None
            return
        joined = " ".join(f.text for f in fields)
        dynamic = any(f.dynamic for f in fields)
        if name in _DANGEROUS_ENV:
            self.add(
                Level.APPROVAL,
                f"sets {name}, which makes programs load or run other code",
                f"sets {name}",
            )
        old = self.vars.get(name, "")
        if dynamic or (name in self.vars and old != joined):
            self.vars[name] = None
        else:
            self.vars[name] = joined
        if fields:
            self.check_mentions(fields, _Use(read_only=False), assignment=True)

    def declaration(self, node: Node) -> None:
        for child in node.named_children:
            if child.type == "variable_assignment":
                self.assignment(child)
            elif child.type == "variable_name":
                self.vars[self.text_of(child)] = None
            else:
                for f in self.fields(child):
                    if f.text.startswith("-") and "n" in f.text:
                        self.vars_poisoned = True  # nameref: any variable may change
                    elif not f.dynamic:
                        self.vars[f.text.split("=", 1)[0]] = None

    def substitution(self, node: Node) -> _Output:
        """Check the commands of ``$(...)``/backticks/``<(...)``; return its static output."""
        key = (node.start_byte, node.end_byte)
        cached = self._substitutions.get(key)
        if cached is not None:
            return cached
        statements = [c for c in node.named_children if c.type != "comment"]
        out = _NO_OUTPUT
        for statement in statements:
            out = self.visit(statement, _NO_INPUT)
        if len(statements) != 1 or node.type == "process_substitution":
            out = _Output(None, out.decoded, out.downloaded)
        self._substitutions[key] = out
        return out

    # --- words ----------------------------------------------------------------------

    def lookup(self, name: str) -> str | None:
        if name in self.vars and not self.vars_poisoned:
            return self.vars[name]
        if name == "HOME":
            return self.places.home
        if name == "HERMES_HOME":
            return self.places.hermes_homes[0]
        if name == "PWD" and self.cwd and self.cwd_known:
            return self.cwd
        return None

    def fields(self, node: Node, *, quoted: bool = False) -> list[Field]:
        """Evaluate one word node into the fields bash would make of it."""
        raw = self.text_of(node)
        kind = node.type
        if (
            not quoted
            and kind in ("word", "concatenation")
            and "{" in raw
            and "," in raw
            and (kind == "word" or all(c.type == "word" for c in node.named_children))
        ):
            return [self._tilde(Field(_unescape_unquoted(t), raw)) for t in brace_expand(raw)]
        parts: list[tuple[str, str]] = []
        self._parts(node, parts, quoted)
        fields: list[Field] = []
        cur: list[str] = []
        dyn = False
        has = False
        for part_kind, text in parts:
            if part_kind == "sep":
                if has:
                    fields.append(Field("".join(cur), raw, dyn))
                cur, dyn, has = [], False, False
            elif part_kind == "split":
                pieces = re.split(r"[ \t\n]+", text)
                for i, piece in enumerate(pieces):
                    if i > 0 and has:
                        fields.append(Field("".join(cur), raw, dyn))
                        cur, dyn, has = [], False, False
                    if piece:
                        cur.append(piece)
                        has = True
            else:
                cur.append(text)
                has = True
                if part_kind == "unknown":
                    dyn = True
        if has:
            fields.append(Field("".join(cur), raw, dyn))
        if fields and parts and parts[0][0] == "lit" and parts[0][1].startswith("~"):
            fields[0] = self._tilde(fields[0])
        return fields

    def _tilde(self, f: Field) -> Field:
        text = f.text
        if not text.startswith("~"):
            return f
        head, sep, rest = text.partition("/")
        if head == "~":
            home = self.places.home
        else:
            home = os.path.expanduser(head)
            if home == head:
                return f
        return Field(home + sep + rest if rest or sep else home, f.raw, f.dynamic)

    def _parts(self, node: Node, out: list[tuple[str, str]], quoted: bool) -> None:
        kind = node.type
        if kind == "word" or kind == "number":
            text = self.text_of(node)
            out.append(("q" if quoted else "lit", text if quoted else _unescape_unquoted(text)))
        elif kind == "raw_string":
            out.append(("q", self.text_of(node)[1:-1]))
        elif kind == "ansi_c_string":
            out.append(("q", decode_ansi_c(self.text_of(node)[2:-1])))
        elif kind in ("string", "translated_string"):
            inner = node
            if kind == "translated_string":
                inner = next((c for c in node.named_children if c.type == "string"), node)
            start = inner.start_byte + 1
            end = inner.end_byte - 1
            pos = start
            for child in inner.named_children:
                if child.type == "string_content":
                    continue
                if child.start_byte > pos:
                    out.append(("q", _unescape_dq(self._slice(pos, child.start_byte))))
                self._parts(child, out, True)
                pos = child.end_byte
            if end > pos:
                out.append(("q", _unescape_dq(self._slice(pos, end))))
            elif not inner.named_children and end >= start:
                out.append(("q", ""))
        elif kind == "concatenation":
            for child in node.children:
                self._parts(child, out, quoted)
        elif kind in ("simple_expansion", "expansion"):
            self._expansion(node, out, quoted)
        elif kind in ("command_substitution",):
            sub = self.substitution(node)
            if sub.data is None:
                out.append(("unknown", UNKNOWN))
            else:
                text = sub.data.decode("utf-8", "replace").rstrip("\n")
                out.append(("q" if quoted else "split", text))
        elif kind == "process_substitution":
            self.substitution(node)
            out.append(("unknown", UNKNOWN))
        elif kind in ("$", '"'):
            return
        else:
            # Arithmetic, arrays, globs, anything else: the value is not known; visit
            # the inside for command substitutions all the same.
            for child in node.named_children:
                self.visit(child, _NO_INPUT)
            if kind in ("extglob_pattern", "regex"):
                out.append(("lit", self.text_of(node)))
            else:
                out.append(("unknown", UNKNOWN))

    def _slice(self, start: int, end: int) -> str:
        return self._source[start:end].decode("utf-8", "surrogateescape")

    def _expansion(self, node: Node, out: list[tuple[str, str]], quoted: bool) -> None:
        named = node.named_children
        plain = len(named) == 1 and named[0].type in ("variable_name", "special_variable_name")
        if not plain:
            for child in named:
                if child.type not in ("variable_name", "special_variable_name"):
                    self.fields(child, quoted=True)
            text = self.text_of(node)
            if ":=" in text or "=" in text.split("}")[0][2:]:
                for child in named:
                    if child.type == "variable_name":
                        self.vars[self.text_of(child)] = None
            out.append(("unknown", UNKNOWN))
            return
        name = self.text_of(named[0])
        if name == "IFS":
            self.add(
                Level.APPROVAL,
                "uses $IFS inside a word, a way to hide spaces from a reader",
                "$IFS trick",
            )
            out.append(("q", " ") if quoted else ("sep", ""))
            return
        value = self.lookup(name)
        if value is None:
            out.append(("unknown", UNKNOWN))
        else:
            out.append(("q" if quoted else "split", value))

    # --- simple commands ----------------------------------------------------------------

    def simple_command(self, node: Node, stdin: _Input, outer_redirects: Sequence[Node]) -> _Output:
        argv: list[Field] = []
        redirect_nodes: list[Node] = [*outer_redirects]
        for child in node.named_children:
            kind = child.type
            if kind == "variable_assignment":
                self.assignment(child)
            elif kind == "command_name":
                for sub in child.named_children:
                    argv.extend(self.fields(sub))
            elif kind == "file_redirect":
                redirect_nodes.append(child)
            elif kind == "herestring_redirect":
                stdin = self.herestring(child)
            elif kind == "heredoc_redirect":
                stdin = self.heredoc(child)
            elif kind == "comment":
                continue
            else:
                argv.extend(self.fields(child))
        argv.extend(self.redirect_words(redirect_nodes))
        if not argv:
            self.apply_redirects(redirect_nodes)
            return _NO_OUTPUT
        out = self.check_argv(argv, stdin)
        self.apply_redirects(redirect_nodes, out)
        return out

    def redirect_words(self, nodes: Sequence[Node]) -> list[Field]:
        """Words the grammar attached to a redirection that are really arguments."""
        extra: list[Field] = []
        for node in nodes:
            if node.type == "file_redirect":
                targets = [c for c in node.named_children if c.type != "file_descriptor"]
                for more in targets[1:]:
                    extra.extend(self.fields(more))
        return extra

    def apply_redirects(self, nodes: Sequence[Node], out: _Output = _NO_OUTPUT) -> list[Field]:
        """Check file redirections; return words the grammar attached to them by mistake.

        A file written from known output (``echo ... > x.sh``) is remembered, so a
        later ``bash x.sh`` in the same command is checked as well.
        """
        extra: list[Field] = []
        for node in nodes:
            if node.type == "heredoc_redirect":
                self.heredoc(node)
                continue
            if node.type == "herestring_redirect":
                self.herestring(node)
                continue
            if node.type != "file_redirect":
                self.visit(node, _NO_INPUT)
                continue
            op = ""
            targets: list[Node] = []
            for child in node.children:
                if not child.is_named:
                    op = op or child.type
                elif child.type not in ("file_descriptor",):
                    targets.append(child)
            if not targets:
                continue
            first, rest = targets[0], targets[1:]
            if first.type == "number" and op in (">&", "<&"):
                continue
            fields = self.fields(first)
            self._redirect_target(op, fields, [])
            if op in _WRITE_OPS and len(fields) == 1 and not fields[0].dynamic:
                path = self.resolve(fields[0].text)
                known = self.files.get(path, b"") if op in (">>", "&>>") else b""
                self.files[path] = None if out.data is None or known is None else known + out.data
            for more in rest:
                extra.extend(self.fields(more))
        return extra

    def _redirect_target(self, op: str, fields: Sequence[Field], argv: Sequence[Field]) -> None:
        write = op in _WRITE_OPS
        for f in fields:
            if f.text == "-" and op in (">&", "<&"):
                continue
            if write:
                self.check_write(f, "redirects output into", argv)
                self.check_mentions([f], _Use(writes=[f], precise=True))
            else:
                self.check_mentions([f], _Use(read_only=True))

    # --- the rules ------------------------------------------------------------------

    def check_argv(self, argv: list[Field], stdin: _Input) -> _Output:
        """Classify one simple command given as its words; return its static output."""
        name = argv[0]
        if name.dynamic:
            self.commands[tuple(f.shown for f in argv)] = None
            self.add(
                Level.APPROVAL,
                f"the command name ({name.raw}) is only known when it runs",
                argv=argv,
            )
            self.check_mentions(argv[1:], _Use())
            return _NO_OUTPUT
        base = canonical_name(name.text)
        self.commands[tuple(f.shown for f in argv)] = None
        if "/" in name.text and self.files:
            self.written_script(name.text, name, argv, shell=True)
        if base in self.aliases and self.depth < MAX_DEPTH:
            expanded = self.aliases[base] + " " + " ".join(_quote(f.text) for f in argv[1:])
            self.nested(expanded, f"alias {base}", same_scope=True)
        args = argv[1:]
        handler = _RULES.get(base)
        if handler is None and base in _PACKAGE_VERBS:
            handler = _Analysis.r_package
        result = handler(self, base, argv, stdin) if handler is not None else None
        use = result if isinstance(result, _Use) else _Use(read_only=base in READ_ONLY)
        if isinstance(result, _Output):
            return result
        for target in use.writes:
            self.check_write(target, f"{base} writes", argv)
        self.check_mentions(args, use, argv=argv)
        self.check_credentials(args, argv)
        if base in ("echo", "printf", "cat", "rev", "tac") or base in _DECODERS:
            return self.static_output(base, args, stdin)
        if base in DOWNLOADERS:
            return _Output(None, False, True)
        return _NO_OUTPUT

    def static_output(self, base: str, args: list[Field], stdin: _Input) -> _Output:
        if any(f.dynamic for f in args):
            return _NO_OUTPUT
        texts = [f.text for f in args]
        if base == "echo":
            newline, escapes = True, False
            while texts and re.fullmatch(r"-[neE]+", texts[0]):
                newline = newline and "n" not in texts[0]
                escapes = "e" in texts[0] or escapes
                texts = texts[1:]
            body = " ".join(texts)
            if escapes:
                body = decode_ansi_c(body)
            return _Output((body + ("\n" if newline else "")).encode())
        if base == "printf":
            if not texts or texts[0].startswith("-"):
                return _NO_OUTPUT
            fmt, values = texts[0], texts[1:]
            if "%" in fmt.replace("%%", ""):
                if re.fullmatch(r"(%[sb](\\n)?)+", fmt) or fmt in ("%s", "%s\\n", "%b"):
                    body = "".join(values)
                else:
                    return _NO_OUTPUT
            else:
                body = fmt.replace("%%", "%")
            return _Output(decode_ansi_c(body).encode())
        data = stdin.data
        if base == "cat":
            if texts and texts != ["-"]:
                return _NO_OUTPUT
            return _Output(data, stdin.decoded, stdin.downloaded)
        decoder = _DECODERS.get(base)
        if decoder is not None:
            result = decoder(texts, data)
            if result is _NOT_DECODING:
                return _Output(None, False, stdin.downloaded)
            return _Output(result if isinstance(result, bytes) else None, True, stdin.downloaded)
        if data is None:
            return _NO_OUTPUT
        if base == "rev":
            lines = data.decode("utf-8", "replace").split("\n")
            return _Output("\n".join(line[::-1] for line in lines).encode(), True)
        if base == "tac":
            lines = data.decode("utf-8", "replace").rstrip("\n").split("\n")
            return _Output(("\n".join(reversed(lines)) + "\n").encode(), True)
        return _NO_OUTPUT  # pragma: no cover

    # path checks ----------------------------------------------------------------------

    def resolve(self, text: str) -> str:
        if text.startswith("/"):
            return _norm(text)
        if text.startswith(UNKNOWN):
            return text
        if self.cwd is None:
            return text  # relative to a workspace we do not know: not a protected place
        if not self.cwd_known:
            return UNKNOWN + "/" + text
        return _norm(posixpath.join(self.cwd, text))

    def check_write(self, f: Field, what: str, argv: Sequence[Field]) -> None:
        """A file the command writes: devices, system paths, start-up files."""
        text = f.text
        if f.dynamic and text.startswith(UNKNOWN):
            self.add(
                Level.APPROVAL,
                f"{what} a file whose name is only known when it runs ({f.raw})",
                argv=argv,
            )
            return
        path = self.resolve(text)
        if _DISK_DEVICE.match(path):
            self.add(
                Level.REFUSED,
                f"{what} the disk device {path} (destroys the file system on it)",
                "disk device",
                argv,
            )
            return
        if path in _SAFE_DEVICES or path.startswith("/dev/fd/"):
            return
        if path.startswith(("/dev/tcp/", "/dev/udp/")):
            self.add(
                Level.APPROVAL,
                f"opens a network connection through {path} (a reverse-shell pattern)",
                "/dev/tcp",
                argv,
            )
            return
        if path == "/":
            self.add(
                Level.APPROVAL, f"{what} / itself, the root of the file system", "write /", argv
            )
            return
        if path.startswith("/") and not path.startswith(_NOT_SYSTEM):
            for prefix in _SYSTEM_DIRS:
                if path == prefix or path.startswith(prefix + "/"):
                    self.add(
                        Level.APPROVAL,
                        f"{what} the system path {path}",
                        f"write {prefix}",
                        argv,
                    )
                    return
            home = self.places.home
            if (
                path.count("/") == 1
                and path != "/"
                and not path.startswith("/tmp")
                and not (path == home or home.startswith(path + "/"))
            ):
                self.add(Level.APPROVAL, f"{what} {path} at the file system root", "write /", argv)
                return
        parts = path.split("/")
        if parts[-1] in _USER_CONFIG_NAMES or any(p in _USER_CONFIG_DIRS for p in parts[:-1]):
            self.add(
                Level.APPROVAL,
                f"{what} {path}, a shell start-up, ssh or credentials file",
                "write start-up file",
                argv,
            )

    def hermes_kinds(self, f: Field) -> dict[str, bool]:
        """Protected HERMES_HOME entries ``f`` may name: kind -> certain (else: maybe)."""
        text = f.text
        found: dict[str, bool] = {}
        if not (
            f.dynamic
            or _has_glob(text)
            or any(h in text for h in _GATE_HINTS)
            or (self.cwd is not None and self._cwd_in_hermes())
            or text in (".", "..")
            or text.startswith("../")
        ):
            return found
        places = self.places
        for spelling, kind in places.spellings:
            if spelling in text:
                found[kind] = True
        path = self.resolve(text)
        if not _has_glob(path):
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
        pattern = _pattern(path)
        prefix = _static_prefix(path)
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

    def _cwd_in_hermes(self) -> bool:
        cwd = self.cwd or ""
        return any(cwd == h or cwd.startswith(h + "/") for h in self.places.hermes_homes)

    def check_mentions(
        self,
        args: Sequence[Field],
        use: _Use,
        *,
        argv: Sequence[Field] = (),
        assignment: bool = False,
    ) -> None:
        """Protected HERMES_HOME files named by a command, and what it may do to them."""
        write_ids = {id(f) for f in use.writes}
        for f in args:
            kinds = self.hermes_kinds(f)
            if not kinds:
                continue
            if assignment:
                writes = False
            elif use.read_only or use.precise:
                writes = id(f) in write_ids
            else:
                writes = True
            for kind, certain in kinds.items():
                self._hermes_finding(kind, certain, writes, f, argv, use.sweeping)
            if assignment and any(k in _HERMES_GATE.values() for k in kinds):
                self.add(
                    Level.APPROVAL,
                    "keeps the path of hermes' own configuration or secrets in a variable",
                    "hermes path in variable",
                    gate=True,
                )

    def _hermes_finding(
        self,
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
                self.add(
                    Level.REFUSED,
                    f"would change {what} ({shown}): the agent cannot lift its own approval gate",
                    "hermes gate",
                    argv,
                    gate=True,
                )
            else:
                self.add(Level.APPROVAL, f"may change {what} ({shown})", argv=argv, gate=True)
        elif kind == "home" and writes and sweeping:
            self.add(
                Level.REFUSED,
                f"would delete or move HERMES_HOME ({shown}), including the approval settings",
                "hermes gate",
                argv,
                gate=True,
            )
        elif kind == "env":
            self.add(Level.APPROVAL, f"reads hermes' secrets file ({shown})", argv=argv, gate=True)
        elif kind in ("auth", "tokens"):
            self.add(
                Level.APPROVAL,
                f"touches hermes' credentials ({shown})",
                argv=argv,
                gate=True,
            )
        elif kind in ("other", "home") and writes:
            self.add(
                Level.APPROVAL,
                f"changes files in HERMES_HOME ({shown}): memories, skills, sessions",
                argv=argv,
                gate=True,
            )

    def check_credentials(self, args: Sequence[Field], argv: Sequence[Field]) -> None:
        for f in args:
            text = f.text
            if not any(h in text for h in _CREDENTIAL_HINTS):
                continue
            path = self.resolve(text)
            if _CREDENTIAL_RE.search(path):
                self.add(
                    Level.APPROVAL,
                    f"touches credentials ({f.shown})",
                    f"credentials {path}",
                    argv,
                )

    def is_catastrophic(self, f: Field) -> bool:
        """``/``, ``~``, top-level system directories, or a glob that covers one."""
        text = f.text
        if text.startswith(UNKNOWN):
            return False
        path = self.resolve(text)
        if path.startswith(UNKNOWN):
            return False
        homes = (self.places.home, posixpath.dirname(self.places.home))
        names = (*_CATASTROPHIC_NAMES, *homes)
        if not _has_glob(path):
            return path in names
        pattern = _pattern(path)
        return any(fnmatch.fnmatchcase(n, pattern) for n in names) or pattern.rstrip("*/") == ""

    def run_code(
        self, base: str, text: str | None, argv: Sequence[Field], what: str = "inline code"
    ) -> None:
        """Inline code given to an interpreter: look for process, delete and decode calls."""
        if text is None:
            self.add(Level.APPROVAL, f"runs {base} {what} built at run time", argv=argv)
            return
        if _CODE_DANGER.search(text):
            self.add(
                Level.APPROVAL,
                f"{base} {what} runs programs, deletes files or decodes hidden code",
                f"{base} inline code",
                argv,
            )
        fake = Field(text, text)
        for kind, certain in self.hermes_kinds(fake).items():
            self._hermes_finding(kind, certain, True, fake, argv, False)

    def runs_stdin(self, base: str, stdin: _Input, argv: Sequence[Field], shell: bool) -> None:
        """A shell or interpreter that reads its program from standard input."""
        if not stdin.piped:
            return
        if stdin.downloaded:
            self.add(
                Level.APPROVAL,
                f"downloads code and runs it ({base} reads it from a pipe)",
                "curl | sh",
                argv,
            )
        if stdin.decoded:
            self.add(
                Level.APPROVAL,
                f"decodes hidden text and runs it with {base}",
                "decode | sh",
                argv,
            )
        if stdin.data is not None:
            text = stdin.data.decode("utf-8", "replace")
            # The text is known: what it does is checked like any command.
            if shell:
                self.nested(text, f"the {stdin.source} given to {base}")
            else:
                self.run_code(base, text, argv, f"code from a {stdin.source}")
            return
        what = "a pipe" if stdin.source == "pipe" else f"a {stdin.source} built at run time"
        self.add(
            Level.APPROVAL,
            f"{base} runs commands it reads from {what}",
            f"{base} reading a {stdin.source}",
            argv,
        )

    # --- individual commands ------------------------------------------------------------

    def r_wrapper(
        self,
        base: str,
        argv: list[Field],
        stdin: _Input,
        *,
        noarg: str = "",
        witharg: str = "",
        long_witharg: Iterable[str] = (),
        positional: int = 0,
        keeps_stdin: bool = True,
    ) -> _Output:
        """Commands that run another command: check every place it may start."""
        args = argv[1:]
        # `sudo VAR=x cmd`, `env VAR=x cmd`: assignments before the command.
        found, certain = _operands(
            args, noarg=noarg, witharg=witharg, long_witharg=long_witharg, stop_at_first=True
        )
        if not found:
            return _NO_OUTPUT
        start = found[0]
        while start < len(args) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", args[start].text):
            name = args[start].text.split("=", 1)[0]
            if name in _DANGEROUS_ENV:
                self.add(
                    Level.APPROVAL,
                    f"sets {name}, which makes programs load or run other code",
                    f"sets {name}",
                )
            start += 1
        start += positional
        candidates = (
            [start]
            if certain
            else [i for i in range(start, len(args)) if not args[i].text.startswith("-")]
        )
        inner_stdin = stdin if keeps_stdin else _NO_INPUT
        out = _NO_OUTPUT
        for i in candidates[:6]:
            if i < len(args):
                out = self.check_argv(list(args[i:]), inner_stdin)
        return out if certain else _NO_OUTPUT

    def r_privilege(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        self.add(Level.APPROVAL, f"runs with another user's rights ({base})", base, argv)
        if base == "su" or base == "runuser":
            for i, f in enumerate(argv[1:], 1):
                t = f.text
                if t in ("-c", "--command") and i + 1 < len(argv):
                    self._shell_string(base, argv[i + 1], argv)
                    return _NO_OUTPUT
                if t.startswith("--command="):
                    self._shell_string(base, Field(t.split("=", 1)[1], f.raw, f.dynamic), argv)
                    return _NO_OUTPUT
            if base == "su":
                self.runs_stdin(base, stdin, argv, True)
                return _NO_OUTPUT
        if base in ("sudo", "sudoedit") and (
            base == "sudoedit" or _cluster_has(argv[1:], "e", ("--edit",))
        ):
            return _NO_OUTPUT
        if (
            base == "sudo"
            and _cluster_has(argv[1:], "si", ("--shell", "--login"))
            and (len(_operands(argv[1:], noarg="AbEeHiKklnPSsVv", witharg="CDghpRrTtUu")[0]) == 0)
        ):
            self.runs_stdin("sudo -s", stdin, argv, True)
            return _NO_OUTPUT
        return self.r_wrapper(
            base,
            argv,
            stdin,
            noarg="AbEeHiKklnPSsVv" if base == "sudo" else "nsL",
            witharg="CDghpRrTtUu" if base == "sudo" else "uCgc",
            long_witharg=(
                "--user",
                "--group",
                "--host",
                "--prompt",
                "--role",
                "--type",
                "--other-user",
                "--close-from",
                "--chdir",
                "--chroot",
                "--command-timeout",
            ),
        )

    def r_env(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        args = argv[1:]
        for i, f in enumerate(args):
            t = f.text
            if t in ("-S", "--split-string") and i + 1 < len(args):
                self._shell_string(base, args[i + 1], argv)
                return _NO_OUTPUT
            if t.startswith(("--split-string=", "-S")) and len(t) > 2:
                body = t.split("=", 1)[1] if t.startswith("--") else t[2:]
                self._shell_string(base, Field(body, f.raw, f.dynamic), argv)
                return _NO_OUTPUT
        found, _ = _operands(
            args,
            noarg="i0v",
            witharg="uCP",
            long_witharg=("--unset", "--chdir"),
            stop_at_first=True,
        )
        if not found:
            return _Output()  # prints the environment
        return self.r_wrapper(
            base, argv, stdin, noarg="i0v", witharg="uCP", long_witharg=("--unset", "--chdir")
        )

    def r_xargs(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        args = argv[1:]
        found, certain = _operands(
            args,
            noarg="0prtxoeil",
            witharg="aEdILnPs",
            long_witharg=(
                "--arg-file",
                "--delimiter",
                "--max-lines",
                "--max-args",
                "--max-procs",
                "--max-chars",
                "--process-slot-var",
            ),
        )
        if not found:
            return _NO_OUTPUT
        candidates = (
            [found[0]]
            if certain
            else [i for i in range(found[0], len(args)) if not args[i].text.startswith("-")]
        )
        for i in candidates[:6]:
            self.check_argv(list(args[i:]), _NO_INPUT)
        return _NO_OUTPUT

    def r_shell(self, base: str, argv: list[Field], stdin: _Input) -> _Output | _Use:
        args = argv[1:]
        has_c = False
        reads_stdin = False
        i = 0
        while i < len(args):
            f = args[i]
            t = f.text
            if f.dynamic:
                break
            if t in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file", "-C", "--init-command"):
                i += 2
                continue
            if t in ("--command",) or t.startswith("--command="):
                has_c = True
                if "=" in t:
                    self._shell_string(base, Field(t.split("=", 1)[1], f.raw), argv)
                    return _NO_OUTPUT
                i += 1
                break
            if t == "--" or t == "-":
                i += 1
                if t == "-":
                    reads_stdin = True
                break
            if t.startswith("--"):
                i += 1
                continue
            if t.startswith(("-", "+")) and len(t) > 1:
                has_c = has_c or "c" in t[1:]
                reads_stdin = reads_stdin or "s" in t[1:]
                i += 1
                continue
            break
        rest = args[i:]
        if has_c:
            if rest:
                self._shell_string(base, rest[0], argv)
            return _NO_OUTPUT
        if rest and not reads_stdin:
            script = rest[0]
            if (
                script.dynamic
                or script.text in ("/dev/stdin", "-")
                or script.text.startswith(("/dev/fd/", "/proc/self/fd/"))
            ):
                if script.text in ("/dev/stdin", "-"):
                    self.runs_stdin(base, stdin, argv, True)
                else:
                    self.add(
                        Level.APPROVAL,
                        f"{base} runs a script produced when it runs ({script.raw})",
                        f"{base} runs generated script",
                        argv,
                    )
            else:
                self.written_script(base, script, argv, shell=True)
            return _Use(read_only=False)
        self.runs_stdin(base, stdin, argv, True)
        return _NO_OUTPUT

    def written_script(
        self, base: str, script: Field, argv: Sequence[Field], *, shell: bool
    ) -> None:
        """A script this same command wrote a moment ago: check what it holds."""
        path = self.resolve(script.text)
        if path not in self.files:
            return
        data = self.files[path]
        if data is None:
            self.add(
                Level.APPROVAL,
                f"{base} runs {script.shown}, which this command writes first",
                f"{base} runs generated script",
                argv,
            )
        elif shell:
            self.nested(data.decode("utf-8", "replace"), f"the script {script.shown}")
        else:
            self.run_code(base, data.decode("utf-8", "replace"), argv, f"script {script.shown}")

    def _shell_string(self, base: str, f: Field, argv: Sequence[Field]) -> None:
        if f.dynamic:
            self.add(
                Level.APPROVAL,
                f"{base} runs a command string that is only known when it runs ({f.raw})",
                argv=argv,
            )
            return
        self.nested(f.text, f"the command string given to {base}")

    def r_interpreter(self, base: str, argv: list[Field], stdin: _Input) -> _Output | _Use:
        args = argv[1:]
        flags = INTERPRETERS.get(base, ())
        for i, f in enumerate(args):
            t = f.text
            if base == "python" and t == "-m" and i + 1 < len(args):
                module = args[i + 1].text
                if module in ("pip", "pip3"):
                    return self.r_package("pip", [_static("pip"), *args[i + 2 :]], stdin)
                if module in ("hermes_agent", "hermes_agent.cli.main"):
                    return self.r_hermes("hermes", [_static("hermes"), *args[i + 2 :]], stdin)
                return _Use()
            for flag in flags:
                code: Field | None = None
                if t == flag and i + 1 < len(args):
                    code = args[i + 1]
                elif (
                    flag.startswith("-")
                    and len(flag) == 2
                    and t.startswith("-")
                    and not t.startswith("--")
                    and t.endswith(flag[1])
                    and len(t) > 2
                    and i + 1 < len(args)
                ):
                    code = args[i + 1]  # a cluster such as `perl -ne CODE`
                elif flag.startswith("-") and len(flag) == 2 and t.startswith(flag) and len(t) > 2:
                    code = Field(t[2:], f.raw, f.dynamic)  # `perl -e'CODE'`
                if code is not None:
                    self.run_code(base, None if code.dynamic else code.text, argv)
                    return _Use()
            if not t.startswith("-") or t == "-":
                if t == "-" or t in ("/dev/stdin",):
                    self.runs_stdin(base, stdin, argv, False)
                elif f.dynamic:
                    self.add(
                        Level.APPROVAL,
                        f"{base} runs a script produced when it runs ({f.raw})",
                        f"{base} runs generated script",
                        argv,
                    )
                else:
                    self.written_script(base, f, argv, shell=False)
                return _Use()
        self.runs_stdin(base, stdin, argv, False)
        return _Use()

    def r_awk(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        if _cluster_has(args, "f", ("--file",)):
            return _Use(read_only=False)
        found, _ = _operands(
            args, noarg="", witharg="vFfe", long_witharg=("--assign", "--field-separator")
        )
        program: Field | None = args[found[0]] if found else None
        for i, f in enumerate(args):
            if f.text in ("-e", "--source") and i + 1 < len(args):
                program = args[i + 1]
        if program is None:
            return _Use(read_only=True)
        if program.dynamic:
            self.run_code(base, None, argv, "program")
            return _Use()
        if _AWK_DANGER.search(program.text):
            self.add(
                Level.APPROVAL,
                f"the {base} program runs commands or writes files",
                f"{base} runs commands",
                argv,
            )
            return _Use()
        return _Use(read_only=True)

    def r_sed(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        scripts: list[Field] = []
        in_place = False
        operands: list[Field] = []
        i = 0
        while i < len(args):
            f = args[i]
            t = f.text
            if t in ("-e", "--expression") and i + 1 < len(args):
                scripts.append(args[i + 1])
                i += 2
                continue
            if t.startswith("--expression="):
                scripts.append(Field(t.split("=", 1)[1], f.raw, f.dynamic))
            elif t in ("-f", "--file", "-l", "--line-length") and i + 1 < len(args):
                i += 2
                continue
            elif t.startswith("--in-place") or (
                t.startswith("-") and not t.startswith("--") and "i" in t[1:].split("e")[0]
            ):
                in_place = True
            elif t.startswith("-") and len(t) > 1 and t != "-":
                pass
            else:
                operands.append(f)
            i += 1
        if not scripts and operands:
            scripts.append(operands.pop(0))
        for script in scripts:
            if script.dynamic or _SED_DANGER.search(script.text):
                self.add(
                    Level.APPROVAL,
                    "the sed script runs commands or writes files (e/w commands)",
                    "sed e/w",
                    argv,
                )
        if in_place:
            return _Use(writes=operands, precise=True)
        return _Use(read_only=True)

    def r_find(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        i = 0
        while i < len(args) and args[i].text in ("-H", "-L", "-P"):
            i += 1
        starts: list[Field] = []
        while i < len(args) and not args[i].text.startswith(("-", "(", "!", ")")):
            starts.append(args[i])
            i += 1
        writes: list[Field] = []
        acts = False
        while i < len(args):
            t = args[i].text
            if t in ("-exec", "-execdir", "-ok", "-okdir"):
                j = i + 1
                while j < len(args) and args[j].text not in (";", "+"):
                    j += 1
                inner = list(args[i + 1 : j])
                if inner:
                    self.check_argv(inner, _NO_INPUT)
                acts = True
                i = j + 1
                continue
            if t == "-delete":
                acts = True
                self.add(
                    Level.APPROVAL,
                    "find -delete deletes every file it matches",
                    "find -delete",
                    argv,
                )
                for s in starts or [_static(".")]:
                    if self.is_catastrophic(s):
                        self.add(
                            Level.REFUSED,
                            f"find {s.shown} -delete would delete the whole tree",
                            "catastrophic delete",
                            argv,
                        )
                    for kind, certain in self.hermes_kinds(s).items():
                        self._hermes_finding(kind, certain, True, s, argv, True)
            if t in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(args):
                writes.append(args[i + 1])
                i += 2
                continue
            i += 1
        return _Use(read_only=not acts and not writes, writes=writes, precise=True)

    def r_rm(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        recursive = _cluster_has(args, "rR", ("--recursive",))
        force = _cluster_has(args, "f", ("--force",))
        found, _ = _operands(args, noarg="rRfdiIv", stop_at_first=False)
        targets = [args[i] for i in found]
        if any(f.text == "--no-preserve-root" for f in args):
            self.add(
                Level.REFUSED, "rm --no-preserve-root exists only to delete /", "rm -rf /", argv
            )
        if recursive or force:
            flags = "-r" if recursive and not force else "-f" if not recursive else "-rf"
            self.add(
                Level.APPROVAL,
                f"rm {flags} deletes {'recursively' if recursive else 'without asking'}",
                "rm -r/-f",
                argv,
            )
        if recursive:
            for t in targets:
                if self.is_catastrophic(t):
                    self.add(
                        Level.REFUSED,
                        f"rm {' '.join(f.shown for f in args)} would delete {t.shown} and "
                        "everything under it",
                        "rm -rf /",
                        argv,
                    )
        return _Use(writes=targets, precise=True, sweeping=recursive)

    def r_simple_writer(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        """touch, mkdir, rmdir, unlink, truncate, tee: every operand is written."""
        witharg = {"mkdir": "m", "truncate": "sr", "touch": "dtr", "shred": "ns"}.get(base, "")
        found, _ = _operands(argv[1:], witharg=witharg, stop_at_first=False)
        targets = [argv[1:][i] for i in found]
        if base == "shred":
            self.add(Level.APPROVAL, "shred destroys the contents of files", "shred", argv)
            for t in targets:
                if _DISK_DEVICE.match(self.resolve(t.text)):
                    self.add(
                        Level.REFUSED,
                        f"shred would wipe the disk device {t.shown}",
                        "disk device",
                        argv,
                    )
        return _Use(writes=targets, precise=True, sweeping=base == "rmdir")

    def r_copy(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        """cp, mv, install, ln, rsync, scp: the destination is written; mv empties sources."""
        args = argv[1:]
        witharg = {"install": "tmogS", "cp": "tS", "mv": "tS", "ln": "tS"}.get(base, "")
        long_with = ("--target-directory", "--suffix", "--mode", "--owner", "--group")
        if base in ("rsync", "scp"):
            witharg = "eiPFoc" if base == "scp" else "eBfT"
            long_with = ("--rsh", "--filter", "--exclude", "--include", "--temp-dir")
        found, _ = _operands(args, witharg=witharg, long_witharg=long_with, stop_at_first=False)
        operands = [args[i] for i in found]
        target: Field | None = None
        for i, f in enumerate(args):
            if f.text in ("-t", "--target-directory") and i + 1 < len(args):
                target = args[i + 1]
            elif f.text.startswith("--target-directory="):
                target = Field(f.text.split("=", 1)[1], f.raw, f.dynamic)
        if target is None and len(operands) >= 2:
            target = operands.pop()
        writes = [target] if target is not None and ":" not in target.text[:1] else []
        if base in ("rsync", "scp") and target is not None and re.match(r"^[^/]*:", target.text):
            writes = []  # a remote destination
        if base == "rsync" and any(f.text.startswith("--delete") for f in args):
            self.add(
                Level.APPROVAL,
                "rsync --delete removes files at the destination",
                "rsync --delete",
                argv,
            )
        if base == "mv":
            for src in operands:
                if self.is_catastrophic(src):
                    self.add(
                        Level.REFUSED,
                        f"mv would move {src.shown} away",
                        "rm -rf /",
                        argv,
                    )
            writes = [*writes, *operands]
        return _Use(writes=writes, precise=True, sweeping=base == "mv")

    def r_tee(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        found, _ = _operands(argv[1:], noarg="aip", stop_at_first=False)
        targets = [argv[1:][i] for i in found]
        use = _Use(writes=targets, precise=True)
        for t in targets:
            self.check_write(t, "tee writes", argv)
        self.check_mentions(argv[1:], use, argv=argv)
        return _Output(stdin.data, stdin.decoded, stdin.downloaded)

    def r_chmod(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        recursive = _cluster_has(args, "R", ("--recursive",))
        found, _ = _operands(args, noarg="RcfvHLP", stop_at_first=False)
        operands = [args[i] for i in found]
        if not any(f.text.startswith("--reference") for f in args) and operands:
            mode = operands.pop(0)
            if base == "chmod" and re.search(r"[ug]?\+[rwx]*s|^[2467][0-7]{3}$", mode.text):
                self.add(Level.APPROVAL, "chmod sets the setuid/setgid bit", "chmod setuid", argv)
        if recursive:
            self.add(
                Level.APPROVAL, f"{base} -R changes every file below the path", f"{base} -R", argv
            )
            for t in operands:
                if self.is_catastrophic(t):
                    self.add(
                        Level.REFUSED,
                        f"{base} -R on {t.shown} would break the system or your home",
                        f"{base} -R /",
                        argv,
                    )
        return _Use(writes=operands, precise=True, sweeping=recursive)

    def r_dd(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        self.add(Level.APPROVAL, "dd copies raw data and overwrites without asking", "dd", argv)
        writes = []
        for f in argv[1:]:
            if f.text.startswith("of="):
                target = Field(f.text[3:], f.raw, f.dynamic)
                writes.append(target)
        return _Use(writes=writes, precise=True)

    def r_format(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        if base in _PARTITIONERS:
            if argv[1:] and all(f.text in ("-l", "--list", "-s", "--print") for f in argv[1:2]):
                return _Use(read_only=True)
            self.add(Level.APPROVAL, f"{base} changes a partition table", base, argv)
            return _Use()
        self.add(Level.APPROVAL, f"{base} creates or erases a file system", base, argv)
        for f in argv[1:]:
            if _DISK_DEVICE.match(self.resolve(f.text)):
                self.add(
                    Level.REFUSED,
                    f"{base} on the disk device {f.shown} destroys the data on it",
                    "format device",
                    argv,
                )
        return _Use()

    def r_git(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        i = 0
        while i < len(args):
            t = args[i].text
            if t in ("-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env"):
                if t == "-c" and i + 1 < len(args):
                    self._git_key(args[i + 1].text.split("=", 1)[0], argv)
                i += 2
                continue
            if t.startswith("-"):
                i += 1
                continue
            break
        if i >= len(args):
            return _Use()
        sub = args[i].text
        rest = args[i + 1 :]
        texts = [f.text for f in rest]
        danger: str | None = None
        if sub == "push":
            if _cluster_has(
                rest,
                "fd",
                (
                    "--force",
                    "--force-with-lease",
                    "--mirror",
                    "--delete",
                    "--prune",
                    "--force-if-includes",
                ),
            ) or any(t.startswith("+") or (t.startswith(":") and len(t) > 1) for t in texts):
                danger = "git push --force/--delete rewrites or deletes remote history"
                key = "git push --force"
        elif sub == "reset" and any(t in ("--hard", "--merge", "--keep") for t in texts):
            danger, key = "git reset --hard discards uncommitted work", "git reset --hard"
        elif sub == "clean" and _cluster_has(rest, "fx", ("--force",)):
            danger, key = "git clean -f deletes untracked files", "git clean -f"
        elif sub == "checkout" and (
            _cluster_has(rest, "f", ("--force",))
            or "." in texts
            or ("--" in texts and texts[-1] != "--")
        ):
            danger, key = "git checkout discards local changes", "git checkout --"
        elif (sub == "restore" and "--staged" not in texts and "-S" not in texts) or (
            sub == "restore" and ("--worktree" in texts or "-W" in texts)
        ):
            danger, key = "git restore discards local changes", "git restore"
        elif sub == "branch" and (
            _cluster_has(rest, "D") or ("--delete" in texts and "--force" in texts)
        ):
            danger, key = "git branch -D deletes a branch that may not be merged", "git branch -D"
        elif sub == "stash" and texts[:1] in (["drop"], ["clear"]):
            danger, key = f"git stash {texts[0]} deletes stashed work", "git stash drop"
        elif sub in ("filter-branch", "filter-repo"):
            danger, key = f"git {sub} rewrites the whole history", "git filter-branch"
        elif (sub == "reflog" and texts[:1] == ["expire"]) or (
            sub == "gc" and any(t.startswith("--prune") for t in texts)
        ):
            danger, key = (
                "discards the reflog, the last way back to lost commits",
                "git reflog expire",
            )
        elif sub == "update-ref" and "-d" in texts:
            danger, key = "git update-ref -d deletes a ref", "git update-ref -d"
        elif sub == "config":
            keys = [t for t in texts if not t.startswith("-")]
            if keys:
                self._git_key(keys[0], argv)
        elif sub == "rebase":
            for j, t in enumerate(texts):
                if t in ("-x", "--exec") and j + 1 < len(rest):
                    self._shell_string("git rebase --exec", rest[j + 1], argv)
        elif sub == "submodule" and texts[:1] == ["foreach"]:
            cmd = [f for f in rest[1:] if not f.text.startswith("--")]
            if cmd:
                if len(cmd) == 1:
                    self._shell_string("git submodule foreach", cmd[0], argv)
                else:
                    self.check_argv(list(cmd), _NO_INPUT)
        elif sub == "bisect" and texts[:1] == ["run"] and len(rest) > 1:
            self.check_argv(list(rest[1:]), _NO_INPUT)
        if danger:
            self.add(Level.APPROVAL, danger, key, argv)
        return _Use()

    def _git_key(self, key: str, argv: Sequence[Field]) -> None:
        if _GIT_EXEC_KEY.match(key):
            self.add(
                Level.APPROVAL,
                f"sets the git option {key}, which makes git run a program",
                "git exec option",
                argv,
            )

    def r_docker(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        found, _ = _operands(
            args,
            witharg="Hcl",
            long_witharg=("--host", "--context", "--config", "--log-level", "--tlscacert"),
        )
        if not found:
            return _Use()
        i = found[0]
        sub = args[i].text
        rest = [f.text for f in args[i + 1 :]]
        ops = [t for t in rest if not t.startswith("-")]
        obj = ops[0] if ops else ""
        destructive = (
            sub in ("rm", "rmi", "kill", "prune")
            or (
                sub in ("container", "image", "volume", "network", "system", "builder", "buildx")
                and obj in ("rm", "remove", "prune", "kill", "delete")
            )
            or (sub == "compose" and any(t in ("down", "rm", "kill") for t in ops))
        )
        if destructive:
            what = f"{sub} {obj}".strip() if sub not in ("rm", "rmi", "kill", "prune") else sub
            self.add(
                Level.APPROVAL,
                f"{base} {what} deletes containers, images or data",
                f"{base} {what}",
                argv,
            )
        if sub in ("run", "create"):
            joined = " ".join(rest)
            if (
                "--privileged" in rest
                or re.search(
                    r"(-v|--volume|--mount)[ =](type=bind,\S*source=)?"
                    r"/(:|,|\s|var/run/docker\.sock|etc)",
                    joined,
                )
                or re.search(r"--(pid|ipc|userns|uts)[ =]host", joined)
            ):
                self.add(
                    Level.APPROVAL,
                    f"the {base} container gets control of the host (--privileged, host mounts)",
                    f"{base} privileged",
                    argv,
                )
        return _Use()

    def r_kill(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        texts = [f.text for f in args]
        strong = False
        targets: list[str] = []
        i = 0
        while i < len(texts):
            t = texts[i]
            if t in ("-s", "-n", "--signal") and i + 1 < len(texts):
                strong = strong or texts[i + 1].upper().removeprefix("SIG") in ("KILL", "9")
                i += 2
                continue
            if t == "--":
                targets.extend(texts[i + 1 :])
                break
            if t.startswith("-") and not targets and i == 0:
                strong = strong or t[1:].upper().removeprefix("SIG") in ("KILL", "9")
                i += 1
                continue
            targets.append(t)
            i += 1
        if strong:
            self.add(
                Level.APPROVAL,
                "kill -9 stops processes without letting them clean up",
                "kill -9",
                argv,
            )
        if "-1" in targets:
            self.add(Level.REFUSED, "kill -1 signals every process you can reach", "kill -1", argv)
        return _Use()

    def r_killers(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        if base == "killall5":
            self.add(Level.REFUSED, "killall5 signals every process on the system", "kill -1", argv)
        self.add(Level.APPROVAL, f"{base} kills processes by name", base, argv)
        return _Use()

    def r_power(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        if base in ("init", "telinit") and not any(
            f.text in ("0", "6", "1", "s", "S") for f in argv[1:]
        ):
            return _Use()
        self.add(Level.APPROVAL, f"{base} shuts down or restarts the machine", "shutdown", argv)
        return _Use()

    def r_systemctl(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        found, _ = _operands(
            argv[1:],
            witharg="HMpPtnos",
            long_witharg=(
                "--host",
                "--machine",
                "--property",
                "--type",
                "--state",
                "--lines",
                "--output",
                "--signal",
            ),
        )
        verb = argv[1:][found[0]].text if found else "list-units"
        if base == "service":
            ops = [f.text for f in argv[1:] if not f.text.startswith("-")]
            verb = ops[1] if len(ops) > 1 else "status"
            if verb in ("status", "--status-all"):
                return _Use()
        elif base == "launchctl":
            if verb in ("list", "print", "print-disabled", "help", "version", "blame", "dumpstate"):
                return _Use()
        elif base == "loginctl":
            if not verb.startswith(
                ("kill", "terminate", "poweroff", "reboot", "disable", "enable")
            ):
                return _Use()
        elif verb in _SYSTEMCTL_READ:
            return _Use()
        self.add(
            Level.APPROVAL,
            f"{base} {verb} changes system services or the machine's state",
            f"{base} {verb}",
            argv,
        )
        return _Use()

    def r_package(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        texts = [f.text for f in args]
        if base in _RUNNERS:
            found, _ = _operands(args, witharg="npe", long_witharg=_RUNNER_OPTIONS)
            if found and texts[found[0]] in ("run", "exec", "x"):
                # `uv run CMD`, `poetry run CMD`, `conda run -n env CMD`: CMD runs.
                self._runner(argv[: found[0] + 2], args[found[0] + 1 :], stdin)
        danger = False
        verb = ""
        if base in _PACKAGE_ANY:
            danger = bool(args) and not all(
                t.startswith("-") and t in ("-h", "--help", "-s", "--search") for t in texts
            )
            verb = "install"
        elif base in ("pacman", "yay", "paru"):
            for t in texts:
                if t.startswith("-") and not t.startswith("--") and len(t) > 1:
                    op, rest = t[1], set(t[2:])
                    if op in "RU" or (op == "S" and not rest <= set("silgpq")):
                        danger, verb = True, t
        elif base == "dpkg":
            for t in texts:
                if t in (
                    "-i",
                    "-r",
                    "-P",
                    "--install",
                    "--remove",
                    "--purge",
                    "--unpack",
                    "--configure",
                    "--set-selections",
                ):
                    danger, verb = True, t
        elif base in ("nix-env",):
            danger = _cluster_has(args, "ieu", ("--install", "--uninstall", "--upgrade", "--set"))
            verb = "install/remove"
        elif base == "nix":
            ops = [t for t in texts if not t.startswith("-")]
            danger = ops[:1] == ["profile"] and ops[1:2] in (
                ["install"],
                ["remove"],
                ["upgrade"],
                ["add"],
            )
            verb = " ".join(ops[:2])
        else:
            witharg = "oCctqS" if base.startswith("apt") else ""
            long_with = ("--prefix", "--workspace", "-C", "--dir", "--cwd", "--project", "--python")
            found, _ = _operands(args, witharg=witharg, long_witharg=long_with)
            if found:
                verb = texts[found[0]]
                verbs = _PACKAGE_VERBS.get(base, frozenset())
                danger = verb in verbs
                if base == "uv":
                    nxt = texts[found[0] + 1] if found[0] + 1 < len(texts) else ""
                    danger = verb in ("add", "remove") or (
                        verb in ("pip", "tool") and nxt in ("install", "uninstall", "sync")
                    )
                    verb = f"{verb} {nxt}".strip() if verb in ("pip", "tool") else verb
        if danger:
            self.add(
                Level.APPROVAL,
                f"{base} {verb} installs or removes software",
                f"{base} {verb}".strip(),
                argv,
            )
        return _Use()

    def _runner(self, head: list[Field], rest: list[Field], stdin: _Input) -> None:
        """The command after ``uv run``/``uvx`` and friends (whose options vary): every
        word that could start it is checked."""
        found, certain = _operands(rest, witharg="npe", long_witharg=_RUNNER_OPTIONS)
        if not found:
            return
        starts = (
            [found[0]]
            if certain
            else [i for i in range(found[0], len(rest)) if not rest[i].text.startswith("-")]
        )
        for i in starts[:6]:
            self.check_argv(list(rest[i:]), stdin)

    def r_uvx(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        self._runner(argv[:1], argv[1:], stdin)
        return _Use()

    def r_admin(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        texts = [f.text for f in argv[1:]]
        read_only = (
            (base in ("mount", "umount") and not texts and base == "mount")
            or (
                base in ("iptables", "ip6tables")
                and any(t in ("-L", "-S", "--list", "--list-rules") for t in texts)
            )
            or (base == "ufw" and texts[:1] in (["status"], ["app"], ["show"]))
            or (base == "nft" and texts[:1] == ["list"])
            or (
                base == "sysctl"
                and not any(
                    t in ("-w", "--write", "-p", "--load", "--system") or "=" in t for t in texts
                )
            )
            or (
                (base == "crontab" and texts in (["-l"], ["-u"]))
                or (base == "crontab" and "-l" in texts)
            )
        )
        if read_only:
            return _Use(read_only=True)
        what = {
            "crontab": "replaces or removes scheduled jobs",
            "mount": "mounts file systems",
            "umount": "unmounts file systems",
        }.get(base, "administers the system")
        self.add(Level.APPROVAL, f"{base} {what}", base, argv)
        return _Use()

    def r_network(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        texts = [f.text for f in argv[1:]]
        if base in ("nc", "ncat", "netcat") and (
            _cluster_has(argv[1:], "ec", ("--exec", "--sh-exec", "--lua-exec"))
        ):
            self.add(Level.APPROVAL, f"{base} -e gives a network peer a shell", "nc -e", argv)
        if base == "socat" and any(re.match(r"(?i)^(exec|system):", t) for t in texts):
            self.add(Level.APPROVAL, "socat runs a program for a network peer", "nc -e", argv)
        return _Use()

    def r_downloader(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        args = argv[1:]
        writes: list[Field] = []
        for i, f in enumerate(args):
            t = f.text
            if base == "curl" and t in ("-o", "--output") and i + 1 < len(args):
                writes.append(args[i + 1])
            if base == "wget" and t in ("-O", "--output-document") and i + 1 < len(args):
                writes.append(args[i + 1])
            if t.startswith(("--output=", "--output-document=")):
                writes.append(Field(t.split("=", 1)[1], f.raw, f.dynamic))
        writes = [w for w in writes if w.text != "-"]
        for w in writes:
            self.check_write(w, f"{base} downloads into", argv)
        self.check_mentions(args, _Use(writes=writes, precise=True), argv=argv)
        return _Output(None, False, True)

    def r_tar(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        texts = [f.text for f in argv[1:]]
        joined = " ".join(texts)
        if re.search(
            r"--(to-command|use-compress-program|checkpoint-action=exec|info-script|new-volume-script|rmt-command|rsh-command)|(^|\s)-[A-Za-z]*I\s",
            joined,
        ):
            self.add(
                Level.APPROVAL,
                "tar runs a program of the caller's choice",
                "tar runs a program",
                argv,
            )
        extract = bool(texts) and (
            "--extract" in texts
            or "-x" in texts
            or re.match(r"^-?[A-Za-z]*x", texts[0]) is not None
        )
        writes: list[Field] = []
        if extract:
            for i, t in enumerate(texts):
                if t in ("-C", "--directory") and i + 1 < len(texts):
                    writes.append(argv[1:][i + 1])
                elif t.startswith("--directory="):
                    writes.append(_static(t.split("=", 1)[1]))
        return _Use(writes=writes, precise=True)

    def r_eval(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        args = argv[1:]
        if not args:
            return _NO_OUTPUT
        if any(f.dynamic for f in args):
            self.add(
                Level.APPROVAL,
                "eval runs a command that is only known when it runs",
                argv=argv,
            )
            self.vars_poisoned = True
            return _NO_OUTPUT
        self.nested(" ".join(f.text for f in args), "eval", same_scope=True)
        return _NO_OUTPUT

    def r_source(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = argv[1:]
        if not args:
            return _Use()
        f = args[0]
        if f.text in ("/dev/stdin", "-") or f.text.startswith(("/dev/fd/", "/proc/self/fd/")):
            self.runs_stdin(base, stdin, argv, True)
        elif f.dynamic:
            self.add(
                Level.APPROVAL,
                f"{base} runs code that is produced when it runs ({f.raw})",
                argv=argv,
            )
        self.vars_poisoned = True
        return _Use(read_only=True)

    def r_alias(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        for f in argv[1:]:
            if "=" not in f.text:
                continue
            name, value = f.text.split("=", 1)
            if f.dynamic:
                self.add(
                    Level.APPROVAL,
                    f"alias {name} runs a command only known when it runs",
                    argv=argv,
                )
                continue
            self.aliases[name] = value
            self.nested(value, f"alias {name}", same_scope=True)
        return _Use(read_only=True)

    def r_trap(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        args = [f for f in argv[1:] if f.text not in ("-p", "-l", "--")]
        if args and args[0].text not in ("-", ""):
            self._shell_string("trap", args[0], argv)
        return _Use(read_only=True)

    def r_watch(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        found, _ = _operands(
            argv[1:], noarg="bcdeghtpx", witharg="nq", long_witharg=("--interval",)
        )
        if found:
            rest = list(argv[1:][found[0] :])
            if _cluster_has(argv[1 : found[0] + 1], "x", ("--exec",)):
                self.check_argv(rest, _NO_INPUT)
            elif any(f.dynamic for f in rest):
                self.add(Level.APPROVAL, "watch runs a command only known when it runs", argv=argv)
            else:
                self.nested(" ".join(f.text for f in rest), "the command given to watch")
        return _Use(read_only=True)

    def r_cd(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        ops = [f for f in argv[1:] if not f.text.startswith("-") or f.text == "-"]
        if not ops:
            self.cwd, self.cwd_known = self.places.home, True
        elif ops[0].dynamic or ops[0].text == "-":
            self.cwd_known = False
        elif self.cwd is not None or ops[0].text.startswith("/"):
            self.cwd = self.resolve(ops[0].text)
            self.cwd_known = not self.cwd.startswith(UNKNOWN)
        return _Use(read_only=True)

    def r_readvars(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        for f in argv[1:]:
            name = f.text.split("=", 1)[0]
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self.vars[name] = None
        return _Use(read_only=base != "printf")

    def r_ssh(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        found, _ = _operands(
            argv[1:],
            noarg="46AaCfGgKkMNnqsTtVvXxYy",
            witharg="BbcDEeFIiJLlmOoPpQRSWw",
        )
        if found and found[0] + 1 < len(argv) - 1:
            remote = list(argv[1:][found[0] + 1 :])
            if any(f.dynamic for f in remote):
                self.add(
                    Level.APPROVAL, "ssh runs a remote command only known when it runs", argv=argv
                )
            else:
                self.nested(" ".join(f.text for f in remote), "the remote command given to ssh")
        return _Use()

    def r_busybox(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        if len(argv) > 1:
            return self.check_argv(list(argv[1:]), stdin)
        return _NO_OUTPUT

    def r_command(self, base: str, argv: list[Field], stdin: _Input) -> _Output:
        if _cluster_has(argv[1:], "vV"):
            return _NO_OUTPUT  # `command -v rm` only looks the name up
        return self.r_wrapper(base, argv, stdin, noarg="p")

    def r_hermes(self, base: str, argv: list[Field], stdin: _Input) -> _Use:
        ops = [f.text for f in argv[1:] if not f.text.startswith("-")]
        sub = ops[0] if ops else ""
        action = ops[1] if len(ops) > 1 else ""
        if not ops or sub in ("version", "help", "tools"):
            return _Use()
        if sub == "config":
            key = ops[2] if len(ops) > 2 else ""
            if action in ("", "show", "get", "path", "env-path", "check"):
                return _Use()
            if action == "edit":
                self.add(
                    Level.REFUSED,
                    "hermes config edit run by the agent could change its own approval "
                    "settings; the user must run it",
                    "hermes gate",
                    argv,
                    gate=True,
                )
                return _Use()
            if action in ("set", "unset"):
                from hermes_agent.config.envfile import is_secret_name

                if key.lower().startswith("approvals") or not key:
                    self.add(
                        Level.REFUSED,
                        f"hermes config {action} {key or '(no key)'}: the agent cannot change "
                        "its own approval settings",
                        "hermes gate",
                        argv,
                        gate=True,
                    )
                elif is_secret_name(key):
                    self.add(
                        Level.REFUSED,
                        f"hermes config {action} {key} writes hermes' .env; the user must run it",
                        "hermes gate",
                        argv,
                        gate=True,
                    )
                else:
                    self.add(
                        Level.APPROVAL,
                        f"hermes config {action} {key} changes hermes' configuration",
                        f"hermes config {action}",
                        argv,
                        gate=True,
                    )
                return _Use()
        if sub == "setup":
            self.add(
                Level.REFUSED,
                "hermes setup rewrites hermes' configuration and .env; the user must run it",
                "hermes gate",
                argv,
                gate=True,
            )
            return _Use()
        if sub == "sessions" and action in ("", "list", "search", "show", "export"):
            return _Use()
        if sub == "skills" and action in ("", "list", "show"):
            return _Use()
        self.add(
            Level.APPROVAL,
            f"hermes {' '.join(ops[:2])} changes hermes' state or starts another agent",
            f"hermes {sub}",
            argv,
            gate=True,
        )
        return _Use()


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# --- decoders: the static output of `base64 -d` and friends -------------------------------

_NOT_DECODING = object()


def _b64(texts: list[str], data: bytes | None) -> bytes | object | None:
    if not any(
        t in ("-d", "--decode", "-D")
        or (t.startswith("-") and "d" in t[1:] and not t.startswith("--"))
        for t in texts
    ):
        return _NOT_DECODING
    if data is None:
        return None
    try:
        cleaned = re.sub(rb"\s+", b"", data)
        return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return None


def _b32(texts: list[str], data: bytes | None) -> bytes | object | None:
    if not any(t in ("-d", "--decode") for t in texts):
        return _NOT_DECODING
    if data is None:
        return None
    try:
        cleaned = re.sub(rb"\s+", b"", data)
        return base64.b32decode(cleaned + b"=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        return None


def _xxd(texts: list[str], data: bytes | None) -> bytes | object | None:
    flags = "".join(t for t in texts if t.startswith("-"))
    if "r" not in flags:
        return _NOT_DECODING
    if data is None or "p" not in flags:
        return None
    try:
        return binascii.unhexlify(re.sub(rb"\s+", b"", data))
    except (binascii.Error, ValueError):
        return None


def _gunzip(texts: list[str], data: bytes | None) -> bytes | object | None:
    if texts and not all(t.startswith("-") for t in texts):
        return _NOT_DECODING  # decompresses files, not stdin
    if data is None:
        return None
    try:
        result = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 1 << 20)
    except zlib.error:
        return None
    return result


def _openssl(texts: list[str], data: bytes | None) -> bytes | object | None:
    if not ("-d" in texts and any(t in ("base64", "-base64", "-a", "enc") for t in texts)):
        return _NOT_DECODING
    return _b64(["-d"], data)


def _tr(texts: list[str], data: bytes | None) -> bytes | object | None:
    ops = [t for t in texts if not t.startswith("-")]
    if len(ops) != 2 or len(ops) != len(texts):
        return _NOT_DECODING
    if data is None:
        return None

    def expand(spec: str) -> str:
        return re.sub(
            r"(.)-(.)",
            lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1)),
            spec,
        )

    src, dst = expand(ops[0]), expand(ops[1])
    if not src or not dst:
        return None
    dst = dst + dst[-1] * max(0, len(src) - len(dst))
    text = data.decode("utf-8", "replace")
    return text.translate(str.maketrans(src, dst[: len(src)])).encode()


_DECODERS: dict[str, Callable[[list[str], bytes | None], bytes | object | None]] = {
    "base64": _b64,
    "base32": _b32,
    "xxd": _xxd,
    "gunzip": _gunzip,
    "zcat": _gunzip,
    "openssl": _openssl,
    "tr": _tr,
}


def _wrapper(**spec: Any) -> Callable[[_Analysis, str, list[Field], _Input], _Output]:
    def run(self: _Analysis, base: str, argv: list[Field], stdin: _Input) -> _Output:
        return self.r_wrapper(base, argv, stdin, **spec)

    return run


_RULES: dict[str, Any] = {
    **{name: _Analysis.r_privilege for name in PRIVILEGE},
    **{name: _Analysis.r_shell for name in SHELLS},
    **{name: _Analysis.r_interpreter for name in INTERPRETERS},
    **{name: _Analysis.r_awk for name in AWKS},
    **{name: _Analysis.r_format for name in _FORMATTERS | _PARTITIONERS},
    **{name: _Analysis.r_power for name in (*_POWER, "init", "telinit")},
    **{name: _Analysis.r_killers for name in _KILLERS},
    **{name: _Analysis.r_downloader for name in ("curl", "wget")},
    **{name: _Analysis.r_admin for name in _ADMIN},
    **{name: _Analysis.r_admin for name in ("mount", "umount", "iptables", "ip6tables", "nft")},
    **{name: _Analysis.r_admin for name in ("ufw", "sysctl", "crontab")},
    **{name: _Analysis.r_systemctl for name in ("systemctl", "service", "launchctl", "loginctl")},
    **{name: _Analysis.r_docker for name in ("docker", "podman", "nerdctl")},
    **{name: _Analysis.r_network for name in ("nc", "ncat", "netcat", "socat")},
    **{name: _Analysis.r_copy for name in ("cp", "mv", "install", "ln", "rsync", "scp")},
    **{name: _Analysis.r_simple_writer for name in ("touch", "mkdir", "rmdir", "unlink")},
    **{name: _Analysis.r_simple_writer for name in ("truncate", "shred")},
    **{name: _Analysis.r_chmod for name in ("chmod", "chown", "chgrp")},
    **{name: _Analysis.r_readvars for name in ("read", "mapfile", "readarray", "getopts", "let")},
    **{name: _Analysis.r_hermes for name in ("hermes", "hermes-agent")},
    **{name: _Analysis.r_package for name in ("pacman", "yay", "paru", "dpkg", "nix-env", "nix")},
    **{name: _Analysis.r_package for name in ("uv", "pdm", "hatch", "pipenv", "pixi", "rye")},
    "uvx": _Analysis.r_uvx,
    **{name: _Analysis.r_cd for name in ("cd", "pushd")},
    **{name: _Analysis.r_source for name in ("source", ".")},
    "rm": _Analysis.r_rm,
    "tee": _Analysis.r_tee,
    "dd": _Analysis.r_dd,
    "git": _Analysis.r_git,
    "kill": _Analysis.r_kill,
    "sed": _Analysis.r_sed,
    "gsed": _Analysis.r_sed,
    "find": _Analysis.r_find,
    "xargs": _Analysis.r_xargs,
    "env": _Analysis.r_env,
    "eval": _Analysis.r_eval,
    "alias": _Analysis.r_alias,
    "trap": _Analysis.r_trap,
    "watch": _Analysis.r_watch,
    "tar": _Analysis.r_tar,
    "ssh": _Analysis.r_ssh,
    "busybox": _Analysis.r_busybox,
    "toybox": _Analysis.r_busybox,
    "command": _Analysis.r_command,
    "builtin": _wrapper(),
    "exec": _wrapper(noarg="cl", witharg="a"),
    "nohup": _wrapper(),
    "time": _wrapper(noarg="pv", witharg="fo", long_witharg=("--format", "--output")),
    "nice": _wrapper(noarg="0123456789", witharg="n", long_witharg=("--adjustment",)),
    "ionice": _wrapper(noarg="t", witharg="cnpPu", long_witharg=("--class", "--classdata")),
    "timeout": _wrapper(
        noarg="v", witharg="sk", long_witharg=("--signal", "--kill-after"), positional=1
    ),
    "setsid": _wrapper(noarg="cfw"),
    "stdbuf": _wrapper(witharg="ioe", long_witharg=("--input", "--output", "--error")),
    "chroot": _wrapper(long_witharg=("--userspec", "--groups"), positional=1),
    "flock": _wrapper(noarg="sxnouFe", witharg="wEc", positional=1),
    "taskset": _wrapper(noarg="ap", witharg="", positional=1),
    "chrt": _wrapper(noarg="abdefiopmrRv", witharg="TPD", positional=1),
    "unbuffer": _wrapper(),
    "catchsegv": _wrapper(),
    "dbus-run-session": _wrapper(),
    "torsocks": _wrapper(),
    "proxychains": _wrapper(noarg="q", witharg="f"),
    "proxychains4": _wrapper(noarg="q", witharg="f"),
    "caffeinate": _wrapper(noarg="dimsu", witharg="tw"),
    "xvfb-run": _wrapper(noarg="a", witharg="nlsfe"),
    "strace": _wrapper(noarg="cCdDfFhiknqrtTvVwxyYz", witharg="eoOpPsSuEIXabU"),
    "ltrace": _wrapper(noarg="bcCdfhiLrStTV", witharg="aAeEFlnopsuwxX"),
    "valgrind": _wrapper(),
    "firejail": _wrapper(),
    "systemd-run": _wrapper(
        noarg="PGdqrt", witharg="upHMEs", long_witharg=("--unit", "--property", "--description")
    ),
    "coproc": _wrapper(),
    "npx": _wrapper(noarg="yq", witharg="p", long_witharg=("--package",)),
}


def classify(command: str, *, cwd: str | None = None) -> Verdict:
    """Classify a shell command: safe, needs approval, or refused, with the reasons.

    Pure apart from reading ``HOME``/``HERMES_HOME`` from the environment (to
    recognise hermes' own files) and fast: well under a millisecond for a
    typical command. ``cwd`` is where the command will start; relative paths
    are resolved against it (so ``echo x > config.yaml`` inside HERMES_HOME is
    recognised).
    """
    analysis = _Analysis(command, cwd)
    analysis.run()
    findings = tuple(f for f in analysis.findings.values() if f.level > Level.SAFE)
    level = max((f.level for f in findings), default=Level.SAFE)
    return Verdict(command, level, findings, tuple(analysis.commands), analysis.parsed)


# --- the gate ---------------------------------------------------------------------------

MODES = ("manual", "smart", "off")
CHOICES = ("yes", "no", "always")
#: ``ToolContext.state`` key: finding keys the user answered "always" to.
ALWAYS_KEY = "approvals.always"


def allow_matches(entry: str, argv: Sequence[str]) -> bool:
    """Whether an ``approvals.allow`` entry covers a sub-command.

    An entry is a command name followed by words that must appear in the
    command in that order: ``git push`` covers ``git -C repo push --force``;
    ``rm`` covers every ``rm``.
    """
    import shlex

    try:
        words = shlex.split(entry)
    except ValueError:
        words = entry.split()
    if not words or not argv or canonical_name(argv[0]) != canonical_name(words[0]):
        return False
    rest = iter(argv[1:])
    return all(any(word == item for item in rest) for word in words[1:])


def _audit(record: dict[str, Any]) -> None:
    """Append one decision to ``logs/approvals.jsonl`` (0600), secrets redacted."""
    from hermes_agent import home
    from hermes_agent.redact import redact

    path = home.approvals_log_path()
    home.ensure_dir(path.parent)
    line = redact(json.dumps(record, ensure_ascii=False)) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def _summary(verdict: Verdict, limit: int = 6) -> str:
    reasons = verdict.reasons
    text = "; ".join(reasons[:limit])
    if len(reasons) > limit:
        text += f"; and {len(reasons) - limit} more"
    return text


async def approve_command(command: str, ctx: ToolContext, *, purpose: str = "terminal") -> None:
    """Let ``command`` run, or raise :class:`ToolError` saying why not.

    The one gate for every command the agent causes to run. Refused commands
    never run. Otherwise ``approvals.mode`` decides: ``off`` runs everything
    else; ``manual`` asks the user (``ctx.ask``) for every command that is not
    safe; ``smart`` asks too, except for sub-commands covered by
    ``approvals.allow``. An "always" answer covers the same kinds of finding
    for the rest of the session. When nobody can answer (``ctx.ask`` returns
    None), the command is denied. Every decision is written to the audit log.
    """
    started = time.perf_counter()
    verdict = classify(command, cwd=ctx.cwd)
    mode = str(ctx.config.get("approvals.mode") or "manual")
    if mode not in MODES:
        mode = "manual"
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": ctx.session_id,
        "purpose": purpose,
        "command": command,
        "cwd": ctx.cwd,
        "depth": ctx.depth,
        "mode": mode,
        "verdict": verdict.level.label,
        "reasons": list(verdict.reasons),
    }

    def decide(decision: str, by: str) -> None:
        record["decision"] = decision
        record["by"] = by
        record["check_ms"] = round((time.perf_counter() - started) * 1000, 3)
        from hermes_agent.errors import HermesError

        try:
            _audit(record)
        except (OSError, ValueError, HermesError) as exc:
            raise ToolError(
                f"the command was not run: its approval could not be recorded in the audit "
                f"log ({exc}); fix HERMES_HOME/logs"
            ) from None

    if verdict.refused:
        decide("refused", "policy")
        refused = [f.reason for f in verdict.findings if f.level is Level.REFUSED]
        raise ToolError(
            "refused: " + "; ".join(dict.fromkeys(refused)) + ". This command is never run "
            "by the agent, whatever the approval mode; if it is really needed, ask the user "
            "to run it themselves."
        )
    if verdict.safe:
        decide("allowed", "safe")
        return
    if mode == "off":
        decide("allowed", "mode off")
        return
    always: set[str] = ctx.state.setdefault(ALWAYS_KEY, set())
    allow = [str(e) for e in (ctx.config.get("approvals.allow") or ()) if str(e).strip()]
    pending = []
    for finding in verdict.findings:
        if finding.key in always:
            continue
        if (
            mode == "smart"
            and not finding.gate
            and finding.argv
            and any(allow_matches(entry, finding.argv) for entry in allow)
        ):
            continue
        pending.append(finding)
    if not pending:
        by = "allow-list" if mode == "smart" and allow else "always"
        if all(f.key in always for f in verdict.findings):
            by = "always"
        decide("allowed", by)
        return
    reasons = "\n".join(f"  - {r}" for r in dict.fromkeys(f.reason for f in pending))
    question = (
        f"The agent wants to run{'' if purpose == 'terminal' else f' ({purpose})'}:\n"
        f"  {command}\n"
        f"It needs your approval because:\n{reasons}\n"
        "Run it? yes = this once, always = allow this kind of command for the rest of the "
        "session, no = do not run it."
    )
    answer = await ctx.ask(question, list(CHOICES))
    normalized = (answer or "").strip().lower()
    record["answer"] = answer
    if answer is None:
        decide("denied", "nobody to ask")
        raise ToolError(
            "denied: this command needs the user's approval ("
            + "; ".join(dict.fromkeys(f.reason for f in pending))
            + ") and nobody is there to give it (a run without a terminal, or a scheduled "
            "job). Do it another way, or tell the user what you wanted to run."
        )
    if normalized in ("always", "a"):
        always.update(f.key for f in pending)
        decide("allowed", "user (always)")
        return
    if normalized in ("yes", "y"):
        decide("allowed", "user")
        return
    decide("denied", "user")
    raise ToolError(
        "denied by the user: the command was not run. Do not retry it; ask the user how "
        "they want to proceed."
    )
