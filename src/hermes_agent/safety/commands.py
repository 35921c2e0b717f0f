"""The table of what commands do.

Each rule takes the running analysis, the program's canonical name, its
words and its standard input, and either records findings and returns a
:class:`~hermes_agent.safety.flow.Use` (which words are files it writes), or
returns the command's static :class:`~hermes_agent.safety.flow.Output`.
Commands that run other commands (wrappers, shells, interpreters, ``find
-exec``...) hand the inner command back to the analysis, which checks it like
any other. :data:`RULES` maps a program name to its rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hermes_agent.safety.flow import NO_INPUT, NO_OUTPUT, Input, Output, Use
from hermes_agent.safety.hermes_cli import (
    NAMES as HERMES_NAMES,
)
from hermes_agent.safety.hermes_cli import (
    is_hermes_program,
    module_is_hermes,
    r_hermes,
)
from hermes_agent.safety.options import cluster_has, scan_operands
from hermes_agent.safety.places import PathKind
from hermes_agent.safety.targets import (
    DISK_DEVICE,
    check_mentions,
    check_read,
    check_write,
    is_catastrophic,
    spot,
)
from hermes_agent.safety.verdict import Level
from hermes_agent.safety.words import UNKNOWN, Field, canonical_name, static, word_set

if TYPE_CHECKING:
    from hermes_agent.safety.parse import Analysis

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
AWKS = word_set("awk gawk mawk nawk busybox-awk")
DOWNLOADERS = word_set("curl wget fetch aria2c http https xh lwp-request")
PRIVILEGE = word_set("sudo doas su pkexec run0 runuser sudoedit calife")
#: Commands that only read (for deciding whether a mention of a protected file is a write).
READ_ONLY = word_set(
    """
    cat head tail less more grep egrep fgrep rg ag ack wc ls dir stat file diff cmp md5sum
    sha1sum sha224sum sha256sum sha384sum sha512sum b2sum cksum echo printf test [ true false
    pwd cd pushd popd which type whereis realpath readlink dirname basename du df tree jq bat
    batcat column nl od hexdump strings tac fold fmt cut uniq paste comm join rev base64 base32
    zcat zless zgrep look env printenv id whoami date uname hostname
    """
)
#: Read-only commands that look at names and metadata only, never at file contents.
NAMES_ONLY = word_set(
    """
    ls dir stat du df tree echo printf test [ true false pwd cd pushd popd which type whereis
    realpath readlink dirname basename env printenv id whoami date uname hostname
    """
)
#: systemctl verbs that only look.
_SYSTEMCTL_READ = word_set(
    """
    status show cat list-units list-unit-files list-sockets list-timers list-jobs
    list-dependencies list-machines list-automounts list-paths is-active is-enabled
    is-failed is-system-running get-default help show-environment --version -h --help
    """
)
PACKAGE_VERBS: dict[str, frozenset[str]] = {
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
_RUNNERS = word_set(
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
_ADMIN = word_set(
    """
    useradd userdel usermod groupadd groupdel groupmod passwd chpasswd chage visudo vipw
    vigr swapon swapoff modprobe insmod rmmod setenforce chattr firewall-cmd
    update-alternatives update-grub grub-install efibootmgr losetup cryptsetup lvremove
    vgremove pvremove mdadm zpool zfs
    """
)
_FORMATTERS = word_set(
    """
    mkfs mke2fs mkswap mkdosfs mkntfs mkexfatfs wipefs blkdiscard
    """
)
_PARTITIONERS = word_set("fdisk sfdisk cfdisk gdisk sgdisk parted kpartx")
_POWER = word_set("shutdown reboot halt poweroff suspend hibernate")
_KILLERS = word_set("killall pkill skill slay killall5")

#: Inline code that runs programs, deletes files or decodes payloads.
CODE_DANGER = re.compile(
    r"\b(remove_tree|File::Path|File::Copy|File::Remove|shutil|rename|move|copy(file|tree)?|"
    r"symlink|write_text|write_bytes|writeFile\w*|appendFile\w*|"
    r"system|popen|spawn\w*|fork|subprocess|check_output|check_call|getoutput|"
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
DANGEROUS_ENV = word_set(
    """
    LD_PRELOAD LD_AUDIT LD_LIBRARY_PATH DYLD_INSERT_LIBRARIES BASH_ENV ENV PROMPT_COMMAND
    SHELLOPTS BASHOPTS PS4 IFS GIT_SSH_COMMAND GIT_SSH GIT_EXTERNAL_DIFF GIT_PAGER
    GIT_EDITOR GIT_ASKPASS PAGER EDITOR VISUAL PERL5OPT NODE_OPTIONS PYTHONSTARTUP
    HERMES_HOME LESSOPEN LESSCLOSE MANPAGER BROWSER SUDO_ASKPASS SSH_ASKPASS RSYNC_RSH
    GIT_PROXY_COMMAND TAR_OPTIONS RUBYOPT GIT_CONFIG_GLOBAL GIT_CONFIG_PARAMETERS
    """
)


# --- the rules ---------------------------------------------------------------------------


def r_wrapper(
    an: Analysis,
    base: str,
    argv: list[Field],
    stdin: Input,
    *,
    noarg: str = "",
    witharg: str = "",
    long_witharg: Iterable[str] = (),
    positional: int = 0,
    keeps_stdin: bool = True,
) -> Output:
    """Commands that run another command: check every place it may start."""
    args = argv[1:]
    # `sudo VAR=x cmd`, `env VAR=x cmd`: assignments before the command.
    found, certain = scan_operands(
        args, noarg=noarg, witharg=witharg, long_witharg=long_witharg, stop_at_first=True
    )
    if not found:
        return NO_OUTPUT
    start = found[0]
    while start < len(args) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", args[start].text):
        name = args[start].text.split("=", 1)[0]
        if name in DANGEROUS_ENV:
            an.add(
                Level.APPROVAL,
                f"sets {name}, which makes programs load or run other code",
                f"sets {name}",
            )
        start += 1
    start += positional
    for f in args[:start]:
        if "=" in f.text and not f.text.startswith("-"):
            name, _, value = f.text.partition("=")
            command_env(an, name, Field(value, f.raw, f.dynamic))
    candidates = (
        [start]
        if certain
        else [i for i in range(start, len(args)) if not args[i].text.startswith("-")]
    )
    inner_stdin = stdin if keeps_stdin else NO_INPUT
    out = NO_OUTPUT
    for i in candidates[:6]:
        if i < len(args):
            out = an.check_argv(list(args[i:]), inner_stdin)
    return out if certain else NO_OUTPUT


#: Variables whose value is a command line some program runs (pagers, editors, ssh...).
COMMAND_ENV = word_set(
    """
    PAGER MANPAGER GIT_PAGER SYSTEMD_PAGER EDITOR VISUAL GIT_EDITOR SUDO_EDITOR GIT_SSH_COMMAND
    GIT_SSH GIT_EXTERNAL_DIFF GIT_ASKPASS SSH_ASKPASS SUDO_ASKPASS LESSOPEN LESSCLOSE BROWSER
    PROMPT_COMMAND RSYNC_RSH GIT_PROXY_COMMAND GIT_SEQUENCE_EDITOR FCEDIT TAR_OPTIONS
    """
)


def command_env(an: Analysis, name: str, value: Field) -> None:
    """``PAGER=...``, ``LESSOPEN='|cmd %s'``: the value is checked as the command it is."""
    if name not in COMMAND_ENV or not value.text:
        return
    text = value.text.lstrip("|-").replace("%s", "file")
    if name == "TAR_OPTIONS":
        an.check_argv([Field("tar", "tar"), *(Field(w, w) for w in text.split())], NO_INPUT)
        return
    an.shell_string(f"${name}", Field(text, value.raw, value.dynamic), [])


def r_privilege(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    an.add(Level.APPROVAL, f"runs with another user's rights ({base})", base, argv)
    if base == "su" or base == "runuser":
        for i, f in enumerate(argv[1:], 1):
            t = f.text
            if t in ("-c", "--command") and i + 1 < len(argv):
                an.shell_string(base, argv[i + 1], argv)
                return NO_OUTPUT
            if t.startswith("--command="):
                an.shell_string(base, Field(t.split("=", 1)[1], f.raw, f.dynamic), argv)
                return NO_OUTPUT
        if base == "su":
            an.runs_stdin(base, stdin, argv, True)
            return NO_OUTPUT
    if base in ("sudo", "sudoedit") and (
        base == "sudoedit" or cluster_has(argv[1:], "e", ("--edit",))
    ):
        return NO_OUTPUT
    if (
        base == "sudo"
        and cluster_has(argv[1:], "si", ("--shell", "--login"))
        and (len(scan_operands(argv[1:], noarg="AbEeHiKklnPSsVv", witharg="CDghpRrTtUu")[0]) == 0)
    ):
        an.runs_stdin("sudo -s", stdin, argv, True)
        return NO_OUTPUT
    return r_wrapper(
        an,
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


def r_env(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    args = argv[1:]
    for i, f in enumerate(args):
        t = f.text
        if t in ("-S", "--split-string") and i + 1 < len(args):
            an.shell_string(base, args[i + 1], argv)
            return NO_OUTPUT
        if t.startswith(("--split-string=", "-S")) and len(t) > 2:
            body = t.split("=", 1)[1] if t.startswith("--") else t[2:]
            an.shell_string(base, Field(body, f.raw, f.dynamic), argv)
            return NO_OUTPUT
    found, _ = scan_operands(
        args,
        noarg="i0v",
        witharg="uCP",
        long_witharg=("--unset", "--chdir"),
        stop_at_first=True,
    )
    if not found:
        return Output()  # prints the environment
    return r_wrapper(
        an, base, argv, stdin, noarg="i0v", witharg="uCP", long_witharg=("--unset", "--chdir")
    )


def r_xargs(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    args = argv[1:]
    found, certain = scan_operands(
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
        return NO_OUTPUT
    candidates = (
        [found[0]]
        if certain
        else [i for i in range(found[0], len(args)) if not args[i].text.startswith("-")]
    )
    items = _xargs_items(args[: found[0]], stdin)
    replace = next(
        (args[j + 1].text for j, f in enumerate(args[: found[0]]) if f.text == "-I"), None
    ) or next(
        (f.text[2:] for f in args[: found[0]] if f.text.startswith("-I") and len(f.text) > 2), None
    )
    if stdin.names and candidates and candidates[0] < len(args):
        # `find DIR | xargs CMD`: CMD gets the files of DIR.
        first = args[candidates[0]]
        if first.dynamic or canonical_name(first.text) not in _NO_CONTENT:
            for root in stdin.names:
                check_read(an, Field(root, root), argv, tree=True)
    for i in candidates[:6]:
        command = list(args[i:])
        an.check_argv(command, NO_INPUT)
        # With its input known, the command xargs builds is checked as it will run.
        if items and replace:
            for item in items[:8]:
                an.check_argv(
                    [Field(f.text.replace(replace, item), f.raw, f.dynamic) for f in command],
                    NO_INPUT,
                )
        elif items:
            an.check_argv([*command, *(Field(item, item) for item in items[:64])], NO_INPUT)
    return NO_OUTPUT


def _xargs_items(options: Sequence[Field], stdin: Input) -> list[str]:
    if stdin.data is None:
        return []
    text = stdin.data.decode("utf-8", "replace")
    texts = [f.text for f in options]
    if "-0" in texts or "--null" in texts:
        return [t for t in text.split("\0") if t]
    if any(t.startswith(("-I", "-L", "-d")) for t in texts):
        return [t for t in text.splitlines() if t]
    return text.split()


def r_shell(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output | Use:
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
                an.shell_string(base, Field(t.split("=", 1)[1], f.raw), argv)
                return NO_OUTPUT
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
            an.shell_string(base, rest[0], argv)
        return NO_OUTPUT
    if rest and not reads_stdin:
        script = rest[0]
        if (
            script.dynamic
            or script.text in ("/dev/stdin", "-")
            or script.text.startswith(("/dev/fd/", "/proc/an/fd/"))
        ):
            if script.text in ("/dev/stdin", "-"):
                an.runs_stdin(base, stdin, argv, True)
            else:
                an.add(
                    Level.APPROVAL,
                    f"{base} runs a script produced when it runs ({script.raw})",
                    f"{base} runs generated script",
                    argv,
                )
        else:
            an.written_script(base, script, argv, shell=True)
        return Use(read_only=False)
    an.runs_stdin(base, stdin, argv, True)
    return NO_OUTPUT


def r_interpreter(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output | Use:
    args = argv[1:]
    flags = INTERPRETERS.get(base, ())
    for i, f in enumerate(args):
        t = f.text
        if base == "python" and t == "-m" and i + 1 < len(args):
            module = args[i + 1].text
            if module in ("pip", "pip3"):
                return r_package(an, "pip", [argv[0], *args[i + 2 :]], stdin)
            if module_is_hermes(module) or (
                module == "runpy" and i + 2 < len(args) and module_is_hermes(args[i + 2].text)
            ):
                skip = 3 if module == "runpy" else 2
                name = "hermes-agent" if module.endswith(".chat") else "hermes"
                return r_hermes(an, name, [static(name), *args[i + skip :]], stdin)
            return Use()
        for flag in flags:
            code: Field | None = None
            if t == flag and i + 1 < len(args):
                code = args[i + 1]
            elif (
                flag.startswith("-")
                and len(flag) == 2
                and re.fullmatch(r"-[a-zA-Z0-9]+", t) is not None
                and not t.startswith(("-M", "-m", "-I", "-r", "-x"))
                and t.endswith(flag[1])
                and len(t) > 2
                and i + 1 < len(args)
            ):
                code = args[i + 1]  # a cluster such as `perl -ne CODE`
            elif flag.startswith("-") and len(flag) == 2 and t.startswith(flag) and len(t) > 2:
                code = Field(t[2:], f.raw, f.dynamic)  # `perl -e'CODE'`
            if code is not None:
                an.run_code(base, None if code.dynamic else code.text, argv)
                rest = args[i + 2 :] if i + 1 < len(args) and code is args[i + 1] else args[i + 1 :]
                if base in ("perl", "ruby") and any(
                    re.match(r"-[pnlawWXtTUcsSdv0]*i", w.text) for w in args[: i + 1]
                ):
                    # `perl -pi -e CODE FILE...`: every file is rewritten in place.
                    files = [w for w in rest if not w.text.startswith("-")]
                    return Use(writes=files, precise=True)
                return Use()
        if not t.startswith("-") or t == "-":
            if t == "-" or t in ("/dev/stdin",):
                an.runs_stdin(base, stdin, argv, False)
            elif f.dynamic:
                an.add(
                    Level.APPROVAL,
                    f"{base} runs a script produced when it runs ({f.raw})",
                    f"{base} runs generated script",
                    argv,
                )
            elif is_hermes_program(an, f, is_file=True):
                # `.venv/bin/python .venv/bin/hermes config set ...`
                return r_hermes(an, "hermes", [f, *args[i + 1 :]], stdin)
            else:
                an.written_script(base, f, argv, shell=False)
            return Use()
    an.runs_stdin(base, stdin, argv, False)
    return Use()


def r_awk(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    if cluster_has(args, "f", ("--file",)):
        return Use(read_only=False)
    found, _ = scan_operands(
        args, noarg="", witharg="vFfe", long_witharg=("--assign", "--field-separator")
    )
    program: Field | None = args[found[0]] if found else None
    for i, f in enumerate(args):
        if f.text in ("-e", "--source") and i + 1 < len(args):
            program = args[i + 1]
    if program is None:
        return Use(read_only=True)
    if program.dynamic:
        an.run_code(base, None, argv, "program")
        return Use()
    if _AWK_DANGER.search(program.text):
        an.add(
            Level.APPROVAL,
            f"the {base} program runs commands or writes files",
            f"{base} runs commands",
            argv,
        )
        for literal in dict.fromkeys(re.findall(r'"((?:[^"\\]|\\.)*)"', program.text)):
            an.nested(literal.replace('\\"', '"'), f"a string the {base} program may run")
        return Use()
    return Use(read_only=True)


def r_sed(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
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
            an.add(
                Level.APPROVAL,
                "the sed script runs commands or writes files (e/w commands)",
                "sed e/w",
                argv,
            )
            for m in re.finditer(
                r"(?:^|[;\n{}])\s*[0-9,$]*(?:/[^/]*/)?\s*e\s+([^;\n}]*)", script.text
            ):
                an.nested(m.group(1), "the command a sed e command runs")
            for m in re.finditer(r"(?:^|[;\n{}])\s*[0-9,$]*(?:/[^/]*/)?\s*w\s+(\S+)", script.text):
                check_write(an, Field(m.group(1), script.raw), "sed w writes", argv)
    if in_place:
        return Use(writes=operands, precise=True)
    return Use(read_only=True)


#: Commands a ``find -exec`` may run on every file without reading its content.
_NO_CONTENT = NAMES_ONLY | word_set("rm rmdir unlink chmod chown chgrp touch mkdir file")


def r_find(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """find: ``-exec``/``-execdir``/``-ok`` commands are checked (with ``{}`` standing for
    the start points when nothing filters them), and they read every file of the tree."""
    args = argv[1:]
    i = 0
    while i < len(args) and args[i].text in ("-H", "-L", "-P"):
        i += 1
    starts: list[Field] = []
    while i < len(args) and not args[i].text.startswith(("-", "(", "!", ")")):
        starts.append(args[i])
        i += 1
    texts = [f.text for f in args[i:]]
    filtered = any(t.startswith("-") and t not in _FIND_NOT_FILTERS for t in texts) and "0" not in [
        texts[j + 1] for j, t in enumerate(texts[:-1]) if t == "-maxdepth"
    ]
    writes: list[Field] = []
    trees: list[Field] = []
    acts = False
    while i < len(args):
        t = args[i].text
        if t in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j].text not in (";", "+"):
                j += 1
            inner = list(args[i + 1 : j])
            if inner:
                if not filtered and any("{}" in f.text for f in inner):
                    for s in (starts or [static(".")])[:4]:
                        an.check_argv(
                            [
                                Field(f.text.replace("{}", s.text), f.raw, f.dynamic or s.dynamic)
                                for f in inner
                            ],
                            NO_INPUT,
                        )
                else:
                    an.check_argv(inner, NO_INPUT)
                if inner[0].dynamic or canonical_name(inner[0].text) not in _NO_CONTENT:
                    trees.extend(starts or [static(".")])
            acts = True
            i = j + 1
            continue
        if t == "-delete":
            acts = True
            an.add(
                Level.APPROVAL,
                "find -delete deletes every file it matches",
                "find -delete",
                argv,
            )
            for s in starts or [static(".")]:
                if is_catastrophic(an, s):
                    an.add(
                        Level.REFUSED,
                        f"find {s.shown} -delete would delete the whole tree",
                        "catastrophic delete",
                        argv,
                    )
                check_write(an, s, "find -delete deletes", argv, sweeping=True)
        if t in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(args):
            writes.append(args[i + 1])
            i += 2
            continue
        i += 1
    lists = [] if acts else list(starts or [static(".")])
    return Use(
        read_only=not acts and not writes, writes=writes, trees=trees, precise=True, lists=lists
    )


#: find options and actions that do not narrow which files ``{}`` stands for.
_FIND_NOT_FILTERS = frozenset(
    [
        "-exec",
        "-execdir",
        "-ok",
        "-okdir",
        "-print",
        "-print0",
        "-maxdepth",
        "-mindepth",
        "-depth",
        "-xdev",
        "-mount",
        "-follow",
        "-noleaf",
        "-ignore_readdir_race",
        "-daystart",
        "-regextype",
        "-warn",
        "-nowarn",
    ]
)


def r_rm(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    recursive = cluster_has(args, "rR", ("--recursive",))
    force = cluster_has(args, "f", ("--force",))
    found, _ = scan_operands(args, noarg="rRfdiIv", stop_at_first=False)
    targets = [args[i] for i in found]
    if any(f.text == "--no-preserve-root" for f in args):
        an.add(Level.REFUSED, "rm --no-preserve-root exists only to delete /", "rm -rf /", argv)
    if recursive or force:
        flags = "-r" if recursive and not force else "-f" if not recursive else "-rf"
        an.add(
            Level.APPROVAL,
            f"rm {flags} deletes {'recursively' if recursive else 'without asking'}",
            "rm -r/-f",
            argv,
        )
    if recursive:
        for t in targets:
            if is_catastrophic(an, t):
                an.add(
                    Level.REFUSED,
                    f"rm {' '.join(f.shown for f in args)} would delete {t.shown} and "
                    "everything under it",
                    "rm -rf /",
                    argv,
                )
    return Use(writes=targets, precise=True, sweeping=recursive)


def r_simple_writer(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """touch, mkdir, rmdir, unlink, truncate, tee: every operand is written."""
    witharg = {"mkdir": "m", "truncate": "sr", "touch": "dtr", "shred": "ns"}.get(base, "")
    found, _ = scan_operands(argv[1:], witharg=witharg, stop_at_first=False)
    targets = [argv[1:][i] for i in found]
    if base == "shred":
        an.add(Level.APPROVAL, "shred destroys the contents of files", "shred", argv)
        for t in targets:
            if DISK_DEVICE.match(an.resolve(t.text)):
                an.add(
                    Level.REFUSED,
                    f"shred would wipe the disk device {t.shown}",
                    "disk device",
                    argv,
                )
    return Use(writes=targets, precise=True, sweeping=base == "rmdir")


def r_tee(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    found, _ = scan_operands(argv[1:], noarg="aip", stop_at_first=False)
    targets = [argv[1:][i] for i in found]
    use = Use(writes=targets, precise=True)
    for t in targets:
        check_write(an, t, "tee writes", argv)
    check_mentions(an, argv[1:], use, argv=argv)
    return Output(stdin.data, stdin.decoded, stdin.downloaded)


def r_chmod(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    recursive = cluster_has(args, "R", ("--recursive",))
    found, _ = scan_operands(args, noarg="RcfvHLP", stop_at_first=False)
    operands = [args[i] for i in found]
    if not any(f.text.startswith("--reference") for f in args) and operands:
        mode = operands.pop(0)
        if base == "chmod" and re.search(r"[ug]?\+[rwx]*s|^[2467][0-7]{3}$", mode.text):
            an.add(Level.APPROVAL, "chmod sets the setuid/setgid bit", "chmod setuid", argv)
    if recursive:
        an.add(Level.APPROVAL, f"{base} -R changes every file below the path", f"{base} -R", argv)
        for t in operands:
            if is_catastrophic(an, t):
                an.add(
                    Level.REFUSED,
                    f"{base} -R on {t.shown} would break the system or your home",
                    f"{base} -R /",
                    argv,
                )
    return Use(writes=operands, precise=True, sweeping=recursive)


def r_dd(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    an.add(Level.APPROVAL, "dd copies raw data and overwrites without asking", "dd", argv)
    writes = []
    for f in argv[1:]:
        if f.text.startswith("of="):
            # bash expands `~` after the `=` of an assignment-like word (`of=~/x`).
            writes.append(an.tilde(Field(f.text[3:], f.raw, f.dynamic)))
        elif f.text.startswith("if="):
            check_read(an, an.tilde(Field(f.text[3:], f.raw, f.dynamic)), argv)
    return Use(writes=writes, precise=True)


def r_format(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    if base in _PARTITIONERS:
        if argv[1:] and all(f.text in ("-l", "--list", "-s", "--print") for f in argv[1:2]):
            return Use(read_only=True)
        an.add(Level.APPROVAL, f"{base} changes a partition table", base, argv)
        return Use()
    an.add(Level.APPROVAL, f"{base} creates or erases a file system", base, argv)
    for f in argv[1:]:
        if DISK_DEVICE.match(an.resolve(f.text)):
            an.add(
                Level.REFUSED,
                f"{base} on the disk device {f.shown} destroys the data on it",
                "format device",
                argv,
            )
    return Use()


def r_git(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    i = 0
    tree: Field | None = None
    while i < len(args):
        t = args[i].text
        if t.startswith(("--work-tree=", "--git-dir=")):
            tree = Field(t.split("=", 1)[1], args[i].raw, args[i].dynamic)
        if t in ("-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env"):
            if t in ("-C", "--work-tree", "--git-dir") and i + 1 < len(args):
                where = args[i + 1]
                tree = where if t != "-C" or tree is None else _under_dir(tree, where)
            if t == "-c" and i + 1 < len(args):
                key, _, value = args[i + 1].text.partition("=")
                _git_key(an, key, argv, Field(value, args[i + 1].raw, args[i + 1].dynamic))
            i += 2
            continue
        if t.startswith("-"):
            i += 1
            continue
        break
    if i >= len(args):
        return Use()
    sub = args[i].text
    rest = args[i + 1 :]
    texts = [f.text for f in rest]
    danger: str | None = None
    if sub == "push":
        if cluster_has(
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
    elif sub == "clean" and cluster_has(rest, "fx", ("--force",)):
        danger, key = "git clean -f deletes untracked files", "git clean -f"
    elif sub == "checkout" and (
        cluster_has(rest, "f", ("--force",))
        or "." in texts
        or ("--" in texts and texts[-1] != "--")
    ):
        danger, key = "git checkout discards local changes", "git checkout --"
    elif (sub == "restore" and "--staged" not in texts and "-S" not in texts) or (
        sub == "restore" and ("--worktree" in texts or "-W" in texts)
    ):
        danger, key = "git restore discards local changes", "git restore"
    elif sub == "branch" and (
        cluster_has(rest, "D") or ("--delete" in texts and "--force" in texts)
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
        keys = [f for f in rest if not f.text.startswith("-")]
        if keys:
            _git_key(an, keys[0].text, argv, keys[1] if len(keys) > 1 else None)
        if any(t in ("--global", "--system") for t in texts):
            check_write(
                an, Field(an.index.home + "/.gitconfig", "~/.gitconfig"), "git config writes", argv
            )
        for j, t in enumerate(texts):
            if t in ("--file", "-f") and j + 1 < len(rest):
                check_write(an, rest[j + 1], "git config writes", argv)
    elif sub == "rebase":
        for j, t in enumerate(texts):
            if t in ("-x", "--exec") and j + 1 < len(rest):
                an.shell_string("git rebase --exec", rest[j + 1], argv)
    elif sub == "submodule" and texts[:1] == ["foreach"]:
        cmd = [f for f in rest[1:] if not f.text.startswith("--")]
        if cmd:
            if len(cmd) == 1:
                an.shell_string("git submodule foreach", cmd[0], argv)
            else:
                an.check_argv(list(cmd), NO_INPUT)
    elif sub == "bisect" and texts[:1] == ["run"] and len(rest) > 1:
        an.check_argv(list(rest[1:]), NO_INPUT)
    if danger:
        an.add(Level.APPROVAL, danger, key, argv)
    into: list[Field] = []
    if sub in _GIT_WORKTREE_WRITERS and tree is not None:
        # Without -C/--work-tree git writes the files it tracks in the repository the
        # command is in: the workspace's own business.
        into.append(tree)
    if sub in ("clone", "init"):
        ops = [f for f in rest if not f.text.startswith("-")]
        if sub == "clone" and len(ops) > 1:
            into.append(ops[1])
        elif sub == "init" and ops:
            into.append(ops[0])
    for j, t in enumerate(texts):
        if t in ("-o", "--output") and sub in ("archive", "format-patch") and j + 1 < len(rest):
            into.append(rest[j + 1])
        elif t.startswith("--output="):
            into.append(Field(t.split("=", 1)[1], rest[j].raw, rest[j].dynamic))
    return Use(into=into, precise=True)


#: git sub-commands that write files of the work tree (so under ``-C DIR``, into DIR).
_GIT_WORKTREE_WRITERS = word_set(
    """
    checkout switch reset restore apply am pull merge rebase cherry-pick revert stash clean
    rm mv read-tree checkout-index worktree submodule sparse-checkout filter-branch
    """
)


def _under_dir(base: Field, sub: Field) -> Field:
    if sub.text.startswith("/"):
        return sub
    return Field(base.text.rstrip("/") + "/" + sub.text, sub.raw, base.dynamic or sub.dynamic)


def _git_key(an: Analysis, key: str, argv: Sequence[Field], value: Field | None = None) -> None:
    """A git setting whose value is a program git runs: the program is checked too."""
    if not _GIT_EXEC_KEY.match(key):
        return
    an.add(
        Level.APPROVAL,
        f"sets the git option {key}, which makes git run a program",
        "git exec option",
        argv,
    )
    if value is None or not value.text:
        return
    if key.lower().startswith("alias."):
        if not value.text.startswith("!"):
            return
        value = Field(value.text[1:], value.raw, value.dynamic)
    an.shell_string(f"git {key}", value, argv)


def r_docker(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    found, _ = scan_operands(
        args,
        witharg="Hcl",
        long_witharg=("--host", "--context", "--config", "--log-level", "--tlscacert"),
    )
    if not found:
        return Use()
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
        an.add(
            Level.APPROVAL,
            f"{base} {what} deletes containers, images or data",
            f"{base} {what}",
            argv,
        )
    if sub in ("run", "create"):
        _container_mounts(an, base, args[i + 1 :], argv)
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
            an.add(
                Level.APPROVAL,
                f"the {base} container gets control of the host (--privileged, host mounts)",
                f"{base} privileged",
                argv,
            )
    return Use()


def _container_mounts(an: Analysis, base: str, args: Sequence[Field], argv: list[Field]) -> None:
    """``-v SRC:DST[:ro]`` and ``--mount type=bind,source=SRC``: the container reads (and,
    unless read-only, writes) everything under SRC."""
    for j, f in enumerate(args):
        t = f.text
        spec_text: str | None = None
        if t in ("-v", "--volume", "--mount") and j + 1 < len(args):
            spec_text = args[j + 1].text
            kind = t
        elif t.startswith(("--volume=", "--mount=")):
            kind, _, spec_text = t.partition("=")
        elif t.startswith("-v") and len(t) > 2:
            kind, spec_text = "-v", t[2:]
        if spec_text is None:
            continue
        if kind == "--mount":
            parts = dict(p.split("=", 1) for p in spec_text.split(",") if "=" in p)
            source = parts.get("source") or parts.get("src") or ""
            read_only = "readonly" in spec_text.split(",") or parts.get("readonly") == "true"
        else:
            pieces = spec_text.split(":")
            source = pieces[0]
            read_only = len(pieces) > 2 and "ro" in pieces[2].split(",")
        if not source.startswith(("/", "~", ".")):
            continue  # a named volume
        where = an.tilde(Field(source, f.raw, f.dynamic))
        check_read(an, where, argv, tree=True)
        if not read_only:
            check_write(an, where, f"the {base} container may write into", argv, into=True)


def r_kill(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
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
        an.add(
            Level.APPROVAL,
            "kill -9 stops processes without letting them clean up",
            "kill -9",
            argv,
        )
    if "-1" in targets:
        an.add(Level.REFUSED, "kill -1 signals every process you can reach", "kill -1", argv)
    return Use()


def r_killers(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    if base == "killall5":
        an.add(Level.REFUSED, "killall5 signals every process on the system", "kill -1", argv)
    an.add(Level.APPROVAL, f"{base} kills processes by name", base, argv)
    return Use()


def r_power(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    if base in ("init", "telinit") and not any(
        f.text in ("0", "6", "1", "s", "S") for f in argv[1:]
    ):
        return Use()
    an.add(Level.APPROVAL, f"{base} shuts down or restarts the machine", "shutdown", argv)
    return Use()


def r_systemctl(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    found, _ = scan_operands(
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
            return Use()
    elif base == "launchctl":
        if verb in ("list", "print", "print-disabled", "help", "version", "blame", "dumpstate"):
            return Use()
    elif base == "loginctl":
        if not verb.startswith(("kill", "terminate", "poweroff", "reboot", "disable", "enable")):
            return Use()
    elif verb in _SYSTEMCTL_READ:
        return Use()
    an.add(
        Level.APPROVAL,
        f"{base} {verb} changes system services or the machine's state",
        f"{base} {verb}",
        argv,
    )
    return Use()


def r_package(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    texts = [f.text for f in args]
    if base in ("pip", "uv") and any(t in ("install", "uninstall", "sync") for t in texts):
        _installs_into_code(an, base, argv)
    if base in _RUNNERS:
        found, _ = scan_operands(args, witharg="npe", long_witharg=_RUNNER_OPTIONS)
        if found and texts[found[0]] in ("run", "exec", "x"):
            # `uv run CMD`, `poetry run CMD`, `conda run -n env CMD`: CMD runs.
            _runner(an, argv[: found[0] + 2], args[found[0] + 1 :], stdin)
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
        danger = cluster_has(args, "ieu", ("--install", "--uninstall", "--upgrade", "--set"))
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
        found, _ = scan_operands(args, witharg=witharg, long_witharg=long_with)
        if found:
            verb = texts[found[0]]
            verbs = PACKAGE_VERBS.get(base, frozenset())
            danger = verb in verbs
            if base == "uv":
                nxt = texts[found[0] + 1] if found[0] + 1 < len(texts) else ""
                danger = verb in ("add", "remove") or (
                    verb in ("pip", "tool") and nxt in ("install", "uninstall", "sync")
                )
                verb = f"{verb} {nxt}".strip() if verb in ("pip", "tool") else verb
    if danger:
        an.add(
            Level.APPROVAL,
            f"{base} {verb} installs or removes software",
            f"{base} {verb}".strip(),
            argv,
        )
    return Use()


def _installs_into_code(an: Analysis, base: str, argv: list[Field]) -> None:
    """``pip install`` into hermes' own environment: by its pip or python, or ``--target``."""
    program = argv[0]
    if "/" in program.text:
        found = spot(an, program)
        if found is not None and PathKind.CODE in found.at:
            an.add(
                Level.REFUSED,
                f"{program.shown} installs into hermes' own Python environment: the agent "
                "cannot change hermes' code",
                "hermes gate",
                argv,
                gate=True,
            )
    args = argv[1:]
    for i, f in enumerate(args):
        t = f.text
        target: Field | None = None
        if t in ("-t", "--target", "--prefix", "--root", "--python", "-p") and i + 1 < len(args):
            target = args[i + 1]
        elif t.startswith(("--target=", "--prefix=", "--root=", "--python=")):
            target = Field(t.split("=", 1)[1], f.raw, f.dynamic)
        if target is not None:
            check_write(an, target, f"{base} installs into", argv, into=True)


def _runner(an: Analysis, head: list[Field], rest: list[Field], stdin: Input) -> None:
    """The command after ``uv run``/``uvx`` and friends (whose options vary): every
    word that could start it is checked."""
    found, certain = scan_operands(rest, witharg="npe", long_witharg=_RUNNER_OPTIONS)
    if not found:
        return
    starts = (
        [found[0]]
        if certain
        else [i for i in range(found[0], len(rest)) if not rest[i].text.startswith("-")]
    )
    for i in starts[:6]:
        an.check_argv(list(rest[i:]), stdin)


def r_uvx(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    _runner(an, argv[:1], argv[1:], stdin)
    return Use()


def r_admin(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
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
        return Use(read_only=True)
    what = {
        "crontab": "replaces or removes scheduled jobs",
        "mount": "mounts file systems",
        "umount": "unmounts file systems",
    }.get(base, "administers the system")
    an.add(Level.APPROVAL, f"{base} {what}", base, argv)
    return Use()


def r_network(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    if base in ("nc", "ncat", "netcat") and (
        cluster_has(argv[1:], "ec", ("--exec", "--sh-exec", "--lua-exec"))
    ):
        an.add(Level.APPROVAL, f"{base} -e gives a network peer a shell", "nc -e", argv)
    for f in argv[1:]:
        m = re.match(r"(?i)^(exec|system):(.*)$", f.text) if base == "socat" else None
        if m:
            an.add(Level.APPROVAL, "socat runs a program for a network peer", "nc -e", argv)
            command = m.group(2).split(",", 1)[0]
            an.shell_string("socat", Field(command, f.raw, f.dynamic), argv)
    return Use()


def r_eval(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    args = argv[1:]
    if not args:
        return NO_OUTPUT
    if any(f.dynamic for f in args):
        an.add(
            Level.APPROVAL,
            "eval runs a command that is only known when it runs",
            argv=argv,
        )
        an.vars_poisoned = True
        return NO_OUTPUT
    an.nested(" ".join(f.text for f in args), "eval", same_scope=True)
    return NO_OUTPUT


def r_source(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = argv[1:]
    if not args:
        return Use()
    f = args[0]
    if f.text in ("/dev/stdin", "-") or f.text.startswith(("/dev/fd/", "/proc/an/fd/")):
        an.runs_stdin(base, stdin, argv, True)
    elif f.dynamic:
        an.add(
            Level.APPROVAL,
            f"{base} runs code that is produced when it runs ({f.raw})",
            argv=argv,
        )
    an.vars_poisoned = True
    return Use(read_only=True)


def r_alias(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    for f in argv[1:]:
        if "=" not in f.text:
            continue
        name, value = f.text.split("=", 1)
        if f.dynamic:
            an.add(
                Level.APPROVAL,
                f"alias {name} runs a command only known when it runs",
                argv=argv,
            )
            continue
        an.aliases[name] = value
        an.nested(value, f"alias {name}", same_scope=True)
    return Use(read_only=True)


def r_trap(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    args = [f for f in argv[1:] if f.text not in ("-p", "-l", "--")]
    if args and args[0].text not in ("-", ""):
        an.shell_string("trap", args[0], argv)
    return Use(read_only=True)


def r_watch(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    found, _ = scan_operands(
        argv[1:], noarg="bcdeghtpx", witharg="nq", long_witharg=("--interval",)
    )
    if found:
        rest = list(argv[1:][found[0] :])
        if cluster_has(argv[1 : found[0] + 1], "x", ("--exec",)):
            an.check_argv(rest, NO_INPUT)
        elif any(f.dynamic for f in rest):
            an.add(Level.APPROVAL, "watch runs a command only known when it runs", argv=argv)
        else:
            an.nested(" ".join(f.text for f in rest), "the command given to watch")
    return Use(read_only=True)


def r_cd(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    ops = [f for f in argv[1:] if not f.text.startswith("-") or f.text == "-"]
    if not ops:
        an.cwd, an.cwd_known = an.index.home, True
    elif ops[0].dynamic or ops[0].text == "-":
        an.cwd_known = False
    elif an.cwd is not None or ops[0].text.startswith("/"):
        an.cwd = an.resolve(ops[0].text)
        an.cwd_known = not an.cwd.startswith(UNKNOWN)
    return Use(read_only=True)


def r_readvars(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    for f in argv[1:]:
        name = f.text.split("=", 1)[0]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            an.vars[name] = None
    return Use(read_only=base != "printf")


def r_busybox(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    if len(argv) > 1:
        return an.check_argv(list(argv[1:]), stdin)
    return NO_OUTPUT


def r_command(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    if cluster_has(argv[1:], "vV"):
        return NO_OUTPUT  # `command -v rm` only looks the name up
    return r_wrapper(an, base, argv, stdin, noarg="p")


#: A command's rule: (analysis, canonical name, words, standard input) -> what it does.
Rule = Callable[["Analysis", str, list[Field], Input], "Output | Use"]


def _wrapper(**spec: Any) -> Rule:
    """The rule of a wrapper whose options are ``spec`` (see :func:`r_wrapper`)."""

    def run(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
        return r_wrapper(an, base, argv, stdin, **spec)

    return run


RULES: dict[str, Rule] = {
    **{name: r_privilege for name in PRIVILEGE},
    **{name: r_shell for name in SHELLS},
    **{name: r_interpreter for name in INTERPRETERS},
    **{name: r_awk for name in AWKS},
    **{name: r_format for name in _FORMATTERS | _PARTITIONERS},
    **{name: r_power for name in (*_POWER, "init", "telinit")},
    **{name: r_killers for name in _KILLERS},
    **{name: r_admin for name in _ADMIN},
    **{name: r_admin for name in ("mount", "umount", "iptables", "ip6tables", "nft")},
    **{name: r_admin for name in ("ufw", "sysctl", "crontab")},
    **{name: r_systemctl for name in ("systemctl", "service", "launchctl", "loginctl")},
    **{name: r_docker for name in ("docker", "podman", "nerdctl")},
    **{name: r_network for name in ("nc", "ncat", "netcat", "socat")},
    **{name: r_simple_writer for name in ("touch", "mkdir", "rmdir", "unlink")},
    **{name: r_simple_writer for name in ("truncate", "shred")},
    **{name: r_chmod for name in ("chmod", "chown", "chgrp")},
    **{name: r_readvars for name in ("read", "mapfile", "readarray", "getopts", "let")},
    **{name: r_hermes for name in HERMES_NAMES},
    **{name: r_package for name in ("pacman", "yay", "paru", "dpkg", "nix-env", "nix")},
    **{name: r_package for name in ("uv", "pdm", "hatch", "pipenv", "pixi", "rye")},
    "uvx": r_uvx,
    **{name: r_cd for name in ("cd", "pushd")},
    **{name: r_source for name in ("source", ".")},
    "rm": r_rm,
    "tee": r_tee,
    "dd": r_dd,
    "git": r_git,
    "kill": r_kill,
    "sed": r_sed,
    "gsed": r_sed,
    "find": r_find,
    "xargs": r_xargs,
    "env": r_env,
    "eval": r_eval,
    "alias": r_alias,
    "trap": r_trap,
    "watch": r_watch,
    "busybox": r_busybox,
    "toybox": r_busybox,
    "command": r_command,
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
    "coproc": _wrapper(),
    "npx": _wrapper(noarg="yq", witharg="p", long_witharg=("--package",)),
}
