"""Programs that run other programs: their argument, an option's value, or their stdin.

Whatever a program's documented behaviour is to execute (``script -c CMD``,
``tmux new -d CMD``, ``gdb -ex 'shell CMD'``, ``vim -c '!CMD'``, ``make -f -``
with a here-document, ``parallel CMD ::: ARGS``, ``at`` reading its job from
stdin...) is treated like the string given to ``sh -c``: parsed and checked
recursively when it is known, and needing approval when it is not. Programs
that hand the command to a service outside this process tree (``at``,
``systemd-run``, a running tmux or screen server, ``flatpak-spawn --host``)
also need approval by themselves: the sandbox does not follow them there.

:data:`RUNS` lists every program here with an example invocation whose
``{a}`` (the payload as words) or ``{s}`` (the payload as one quoted string)
is the command it runs; tests/test_approval.py feeds each one ``rm -rf ~``
and checks it is refused, so a new entry cannot be added without the
mechanism working for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from hermes_agent.safety.commands import r_package, r_wrapper
from hermes_agent.safety.flow import NO_INPUT, NO_OUTPUT, Input, Output, Use
from hermes_agent.safety.options import parse_options, scan_operands, spec
from hermes_agent.safety.targets import check_write
from hermes_agent.safety.verdict import Level
from hermes_agent.safety.words import Field, decode_ansi_c
from hermes_agent.safety.writers import runs_program, sql_commands, ssh_option

if TYPE_CHECKING:
    from hermes_agent.safety.parse import Analysis

Rule = Callable[["Analysis", str, list[Field], Input], "Output | Use"]


def _field(text: str, like: Field) -> Field:
    return Field(text, like.raw, like.dynamic)


def _outside(an: Analysis, base: str, argv: list[Field], how: str) -> None:
    an.add(
        Level.APPROVAL,
        f"{base} {how}, outside this session and its sandbox",
        f"{base} runs outside",
        argv,
    )


def _string(an: Analysis, base: str, f: Field, argv: list[Field]) -> None:
    an.shell_string(base, f, argv)


def _joined(words: list[Field]) -> Field:
    """Several words a program joins with spaces and gives to a shell."""
    if not words:
        return Field("", "")
    return Field(
        " ".join(w.text for w in words),
        " ".join(w.raw for w in words),
        any(w.dynamic for w in words),
    )


def _wrap(noarg: str = "", witharg: str = "", longs: str = "", positional: int = 0) -> Rule:
    """A program that runs the command in the rest of its words (argv form)."""
    long_witharg = tuple(longs.split())

    def rule(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
        return r_wrapper(
            an,
            base,
            argv,
            stdin,
            noarg=noarg,
            witharg=witharg,
            long_witharg=long_witharg,
            positional=positional,
        )

    return rule


def _any_start(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    """A program whose options take varying numbers of arguments (bwrap ``--bind SRC DST``):
    every word that could start the command is checked as its start."""
    args = argv[1:]
    if "--" in [f.text for f in args]:
        cut = [f.text for f in args].index("--")
        return an.check_argv(list(args[cut + 1 :]), stdin) if cut + 1 < len(args) else NO_OUTPUT
    starts = [i for i, f in enumerate(args) if not f.text.startswith("-")]
    for i in starts[:8]:
        an.check_argv(list(args[i:]), NO_INPUT)
    return NO_OUTPUT


def _after(*markers: str, string_markers: tuple[str, ...] = ()) -> Rule:
    """A program whose command follows a marker (``xterm -e CMD``, ``gnome-terminal -- CMD``);
    after a ``string_markers`` option the command is one shell string."""

    def rule(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
        args = argv[1:]
        for i, f in enumerate(args):
            if f.text in string_markers and i + 1 < len(args):
                _string(an, base, args[i + 1], argv)
                return NO_OUTPUT
            if f.text in markers and i + 1 < len(args):
                return an.check_argv(list(args[i + 1 :]), NO_INPUT)
        ops = [i for i, f in enumerate(args) if not f.text.startswith("-")]
        if ops and not markers:
            return an.check_argv(list(args[ops[0] :]), NO_INPUT)
        return NO_OUTPUT

    return rule


# --- programs with a string or a stdin to run --------------------------------------------


def r_script(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """``script -c CMD [FILE]``; without ``-c`` it runs a shell that reads stdin."""
    p = parse_options(
        argv[1:],
        spec(
            "cEIOBTmo",
            "--command --echo --log-in --log-out --log-io --log-timing --logging-format "
            "--output-limit",
        ),
    )
    commands = p.get("-c", "--command")
    for cmd in commands:
        _string(an, base, cmd, argv)
    if not commands:
        an.runs_stdin(base, stdin, argv, True)
    return Use(
        writes=[
            *p.operands[:1],
            *p.get("-O", "--log-out", "-I", "--log-in", "-B", "--log-io", "-T", "--log-timing"),
        ],
        precise=True,
    )


def r_at(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """``at``/``batch``: the job comes from stdin or ``-f FILE`` and runs later, via atd."""
    p = parse_options(argv[1:], spec("qftT"))
    if base == "at" and p.has("l", "c", "r", "d"):
        return Use(read_only=not p.has("r", "d"))
    _outside(an, base, argv, "schedules a command for atd to run later")
    files = p.get("-f")
    for f in files:
        an.written_script(base, f, argv, shell=True)
    if not files:
        if not stdin.piped:
            an.add(Level.APPROVAL, f"{base} runs commands it reads from its input", argv=argv)
        an.runs_stdin(base, stdin, argv, True)
    return Use()


def r_systemd_run(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    _outside(an, base, argv, "runs a command through systemd")
    return r_wrapper(
        an,
        base,
        argv,
        stdin,
        noarg="PGdqrtS",
        witharg="upHMEs",
        long_witharg=(
            "--unit",
            "--property",
            "--description",
            "--slice",
            "--setenv",
            "--host",
            "--machine",
            "--uid",
            "--gid",
            "--nice",
            "--working-directory",
            "--on-calendar",
            "--on-active",
            "--on-boot",
            "--timer-property",
            "--path-property",
            "--socket-property",
            "--service-type",
        ),
    )


def r_flatpak_spawn(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    if any(f.text == "--host" for f in argv[1:]):
        _outside(an, base, argv, "--host runs a command on the host")
    return r_wrapper(an, base, argv, stdin, long_witharg=("--env", "--directory", "--forward-fd"))


#: tmux sub-commands that run a shell command, with the letters that take an argument.
_TMUX_RUN = {
    "new-session": "cefnstxyFX",
    "new": "cefnstxyFX",
    "new-window": "cenStF",
    "neww": "cenStF",
    "split-window": "celpStF",
    "splitw": "celpStF",
    "respawn-pane": "cet",
    "respawnp": "cet",
    "respawn-window": "cet",
    "respawnw": "cet",
    "run-shell": "cdt",
    "run": "cdt",
    "display-popup": "bcdehsStTwxy",
    "popup": "bcdehsStTwxy",
    "pipe-pane": "t",
    "pipep": "t",
}
_KEY_NAMES = {"enter": "\n", "c-m": "\n", "kpenter": "\n", "c-j": "\n", "space": " ", "tab": "\t"}


def r_tmux(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """tmux: commands given to a (possibly already running) server."""
    args = argv[1:]
    i = 0
    while i < len(args) and args[i].text.startswith("-"):
        t = args[i].text
        if t == "-c" and i + 1 < len(args):
            _outside(an, base, argv, "-c runs a shell command")
            _string(an, base, args[i + 1], argv)
            return Use()
        i += 2 if t in ("-L", "-S", "-f", "-T") else 1
    # Several tmux commands may be chained with `;` (given as `\;`).
    groups: list[list[Field]] = [[]]
    for f in args[i:]:
        if f.text == ";":
            groups.append([])
        elif f.text.endswith(";") and f.text != ";" and not f.text.endswith("\\;"):
            groups[-1].append(_field(f.text[:-1], f))
            groups.append([])
        else:
            groups[-1].append(f)
    for group in groups:
        if group:
            _tmux_command(an, base, group, argv)
    return Use()


def _tmux_command(an: Analysis, base: str, words: list[Field], argv: list[Field]) -> None:
    sub = words[0].text
    rest = words[1:]
    if sub in ("send-keys", "send"):
        p = parse_options(rest, spec("NtT"))
        if p.has("X"):
            return
        literal = p.has("l")
        keys = []
        for f in p.operands:
            keys.append(f.text if literal else _KEY_NAMES.get(f.text.lower(), f.text))
        text = "".join(k if k in ("\n", " ", "\t") else k + " " for k in keys).strip(" ")
        _outside(an, base, argv, "types keys into a terminal session")
        if any(f.dynamic for f in p.operands):
            an.add(Level.APPROVAL, "tmux send-keys types text only known when it runs", argv=argv)
        else:
            an.nested(text, "the keys typed by tmux send-keys")
        return
    if sub in ("if-shell", "if"):
        p = parse_options(rest, spec("t"))
        if p.operands:
            _outside(an, base, argv, "if-shell runs a shell command")
            _string(an, base, p.operands[0], argv)
        for f in p.operands[1:3]:
            if f.dynamic:
                an.add(Level.APPROVAL, "tmux runs commands only known when it runs", argv=argv)
            else:
                an.nested("tmux " + f.text, "a tmux command")
        return
    if sub in (
        "set-hook",
        "bind-key",
        "bind",
        "command-prompt",
        "confirm-before",
        "set-option",
        "set",
    ):
        for f in rest:
            if f.dynamic or re.search(r"run|new|split|respawn|send|popup|pipe|if", f.text):
                an.add(
                    Level.APPROVAL,
                    f"tmux {sub} sets up commands that run later ({f.shown})",
                    "tmux hook",
                    argv,
                )
                if not f.dynamic:
                    an.nested("tmux " + f.text, "a tmux command")
        return
    letters = _TMUX_RUN.get(sub)
    if letters is None:
        return
    p = parse_options(rest, spec(letters))
    if not p.operands:
        return
    _outside(an, base, argv, f"{sub} runs a command")
    _string(an, base, _joined(p.operands), argv)


def r_screen(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    """screen: ``screen -dm CMD``; ``-X stuff TEXT``/``-X exec CMD`` for a running session."""
    args = argv[1:]
    i = 0
    while i < len(args) and args[i].text.startswith("-"):
        t = args[i].text
        if t == "-X" and i + 1 < len(args):
            _outside(an, base, argv, "-X sends a command to a running session")
            verb = args[i + 1].text
            rest = list(args[i + 2 :])
            if verb == "stuff":
                text = " ".join(f.text for f in rest)
                text = decode_ansi_c(text.replace("^M", "\n").replace("^J", "\n"))
                if any(f.dynamic for f in rest):
                    an.add(Level.APPROVAL, "screen types text only known when it runs", argv=argv)
                else:
                    an.nested(text, "the text typed by screen stuff")
            elif verb in ("exec", "screen") and rest:
                return an.check_argv(rest, NO_INPUT)
            elif rest or verb:
                an.add(Level.APPROVAL, f"screen -X {verb} controls a running session", argv=argv)
            return NO_OUTPUT
        takes = t in ("-Logfile", "-L") or (
            len(t) > 1 and t[-1] in "Scehpsts T" and t[1:].isalpha()
        )
        i += 2 if takes else 1
    if i < len(args):
        return an.check_argv(list(args[i:]), NO_INPUT)
    return NO_OUTPUT


def r_parallel(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """GNU parallel/sem: the command template, filled with each argument, runs in a shell."""
    args = argv[1:]
    sep = next(
        (i for i, f in enumerate(args) if f.text in (":::", "::::", ":::+", "::::+")), len(args)
    )
    found, _ = scan_operands(
        args[:sep],
        noarg="0kqgruvX",
        witharg="aCdEIjLlnNsS",
        long_witharg=(
            "--arg-file",
            "--colsep",
            "--delimiter",
            "--jobs",
            "--sshlogin",
            "--max-args",
            "--max-lines",
            "--results",
            "--joblog",
            "--tmpdir",
            "--workdir",
            "--env",
            "--basefile",
            "--transfer-file",
            "--return",
            "--timeout",
            "--retries",
            "--id",
            "--semaphorename",
            "--tag-string",
            "--rpl",
        ),
        stop_at_first=True,
    )
    template = list(args[found[0] : sep]) if found else []
    values = [f for f in args[sep + 1 :] if f.text not in (":::", "::::", ":::+", "::::+")]
    if not template:
        # No command: each argument (or each line of stdin) is a command of its own.
        for f in values:
            _string(an, base, f, argv)
        if sep == len(args):
            an.runs_stdin(base, stdin, argv, True)
        return Use()
    texts = [f.text for f in template]
    joined = " ".join(texts)
    if any(f.dynamic for f in template):
        an.add(Level.APPROVAL, f"{base} runs a command only known when it runs", argv=argv)
        return Use()
    if values and args[sep].text in (":::", ":::+"):
        for v in values[:16]:
            filled = joined.replace("{}", v.text) if "{}" in joined else f"{joined} {v.text}"
            if v.dynamic:
                an.add(
                    Level.APPROVAL,
                    f"{base} runs {joined} on values only known when it runs",
                    argv=argv,
                )
            an.nested(filled, f"the command given to {base}")
    else:
        an.nested(joined, f"the command given to {base}")
        if stdin.data is not None:
            for line in stdin.data.decode("utf-8", "replace").splitlines()[:16]:
                filled = joined.replace("{}", line) if "{}" in joined else f"{joined} {line}"
                an.nested(filled, f"the command given to {base}")
    return Use()


_GDB_SHELL = re.compile(r"^\s*(shell\b|!|pipe\b|\|)\s*(.*)$", re.S)
_GDB_CODE = re.compile(r"^\s*(python|py|pi|python-interactive|guile|gu)\b\s*(.*)$", re.S)


def debugger_command(an: Analysis, base: str, f: Field, argv: list[Field]) -> None:
    """One gdb/lldb command: ``shell CMD``, ``!CMD``, ``python CODE``, ``platform shell``."""
    if f.dynamic:
        an.add(Level.APPROVAL, f"{base} runs a command only known when it runs", argv=argv)
        return
    text = f.text
    if base == "lldb":
        text = re.sub(r"^\s*platform\s+shell\b", "shell", text)
        text = re.sub(r"^\s*script\b", "python", text)
    m = _GDB_SHELL.match(text)
    if m:
        an.add(Level.APPROVAL, f"{base} runs a shell command", f"{base} shell", argv)
        body = m.group(2)
        if m.group(1) in ("pipe", "|") and "|" in body:
            body = body.split("|", 1)[1]
        an.nested(body, f"the shell command given to {base}")
        return
    m = _GDB_CODE.match(text)
    if m:
        an.run_code("python", m.group(2), argv, f"{base} python code")
        return
    if re.search(r"\b(system|exec|popen|call|source|run|start|attach)\b", text):
        an.add(
            Level.APPROVAL, f"{base} runs {text!r}, which can run programs", f"{base} call", argv
        )


def r_gdb(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output | Use:
    args = argv[1:]
    for i, f in enumerate(args):
        if f.text == "--args" and i + 1 < len(args):
            an.check_argv(list(args[i + 1 :]), NO_INPUT)
            args = args[:i]
            break
    p = parse_options(
        args,
        spec(
            "xpcdsoOS" if base == "lldb" else "xpcdsexbDI",
            "--eval-command --init-eval-command --command --init-command --pid --core "
            "--directory --symbols --exec --one-line --one-line-before-file --source "
            "--source-before-file --batch-command",
            words="-ex -iex -x -ix -eval-command -init-eval-command",
        ),
    )
    commands = p.get(
        "-ex",
        "-iex",
        "--eval-command",
        "--init-eval-command",
        "-eval-command",
        "-init-eval-command",
        "-o",
        "--one-line",
        "-O",
        "--one-line-before-file",
    )
    for cmd in commands:
        debugger_command(an, base, cmd, argv)
    for script in p.get("-x", "-ix", "--command", "--init-command", "-s", "--source", "-S"):
        an.written_script(base, script, argv, shell=False)
    if stdin.data is not None and p.has("batch", "b", "--batch"):
        for line in stdin.data.decode("utf-8", "replace").splitlines():
            debugger_command(an, base, Field(line, line), argv)
    return Use()


_TCL_RUN = re.compile(r"(?:^|[;\[\n{])\s*(spawn|exec|system|open\s+\"?\|)\s+([^;\]\n}]*)")


def tcl_code(an: Analysis, base: str, text: str, argv: list[Field]) -> None:
    """expect/tclsh code: ``spawn CMD``, ``exec CMD``, ``system CMD`` run programs."""
    for m in _TCL_RUN.finditer(text):
        words = m.group(2).strip()
        if words.count('"') == 2 and words.startswith('"') and words.endswith('"'):
            words = words[1:-1]
        words = re.sub(r"^-\S+\s+", "", words)
        if words:
            an.add(
                Level.APPROVAL, f"{base} code runs programs ({m.group(1)})", f"{base} runs", argv
            )
            an.nested(words, f"the command {base} runs")


def r_expect(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    p = parse_options(argv[1:], spec("cfD"))
    for code in p.get("-c"):
        if code.dynamic:
            an.add(Level.APPROVAL, f"{base} runs code only known when it runs", argv=argv)
        else:
            tcl_code(an, base, code.text, argv)
    scripts = [*p.get("-f"), *p.operands[:1]]
    for script in scripts:
        if script.text in ("-", "/dev/stdin"):
            _tcl_stdin(an, base, stdin, argv)
        else:
            _written_tcl(an, base, script, argv)
    if not scripts and not p.get("-c"):
        _tcl_stdin(an, base, stdin, argv)
    return Use()


def _tcl_stdin(an: Analysis, base: str, stdin: Input, argv: list[Field]) -> None:
    if stdin.data is not None:
        tcl_code(an, base, stdin.data.decode("utf-8", "replace"), argv)
    elif stdin.piped:
        an.add(Level.APPROVAL, f"{base} runs code it reads from a pipe", argv=argv)


def _written_tcl(an: Analysis, base: str, script: Field, argv: list[Field]) -> None:
    data = an.files.get(an.resolve(script.text), b"")
    if data is None:
        an.add(
            Level.APPROVAL,
            f"{base} runs {script.shown}, which this command writes first",
            argv=argv,
        )
    elif data:
        tcl_code(an, base, data.decode("utf-8", "replace"), argv)


# --- editors: they write their files, and their commands can run programs ----------------

_VIM_RISKY = re.compile(
    r"\b(system|systemlist|job_?start|termopen|term(inal)?|py[3x]?|python3?|pyx?do|py3do|"
    r"lua|luado|luafile|perl|ruby|rubydo|so(urce)?|exe(cute)?|call|norm(al)?|libcall|"
    r"let|writefile|delete|rename|mksession|mkvimrc|redir)\b"
)
_VIM_WRITE = re.compile(
    r"^\s*(?:\d+|%|\$)?\s*(w|write|wq|x|xit|sav|saveas|up|update|wa|wqa|xa)!?\s+(>>\s*)?(\S+)"
)


def editor_command(an: Analysis, base: str, f: Field, argv: list[Field]) -> None:
    """One vim/ex command: ``!CMD``, ``r !CMD``, ``w !CMD`` run a shell; ``w FILE`` writes."""
    if f.dynamic:
        an.add(Level.APPROVAL, f"{base} runs editor commands only known when it runs", argv=argv)
        return
    text = f.text.lstrip(":")
    bang = re.search(r"(?:^|\|)\s*(?:[\d,.$%'<>]*\s*(?:r|read|w|write)?\s*)!(.*)$", text, re.S)
    if bang:
        an.add(Level.APPROVAL, f"{base} runs a shell command", f"{base} shell", argv)
        an.nested(bang.group(1), f"the shell command given to {base}")
        text = text[: bang.start()]
    for part in text.split("|"):
        m = _VIM_WRITE.match(part)
        if m:
            check_write(an, _field(m.group(3), f), f"{base} writes", argv)
    if _VIM_RISKY.search(text):
        an.add(
            Level.APPROVAL,
            f"{base} runs editor commands that can run programs or change files ({f.shown})",
            f"{base} commands",
            argv,
        )
        for literal in re.findall(r"'([^']*)'|\"([^\"]*)\"", text):
            body = literal[0] or literal[1]
            if body:
                an.nested(body, f"a string in the {base} commands")


def r_editor(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """vim, vi, nvim, ex, view...: commands from ``-c``, ``+CMD``, ``--cmd`` and (in ex mode)
    stdin; the files it is given are written."""
    args: list[Field] = []
    for f in argv[1:]:
        if re.fullmatch(r"-[a-zA-Z]{2,}", f.text):  # `ex -sc CMD`: one letter at a time
            args.extend(_field("-" + ch, f) for ch in f.text[1:])
        else:
            args.append(f)
    commands: list[Field] = []
    operands: list[Field] = []
    ex_mode = base in ("ex", "exim", "nex", "vimex", "ed", "red") or any(
        f.text in ("-e", "-E", "--headless") for f in args
    )
    i = 0
    while i < len(args):
        f = args[i]
        t = f.text
        if t in (
            "-c",
            "--cmd",
            "-S",
            "-T",
            "-u",
            "-U",
            "-i",
            "-w",
            "-W",
            "-t",
            "-q",
            "-r",
            "--servername",
            "--remote-send",
            "--remote-expr",
            "--listen",
        ) or (t == "-s" and not ex_mode):
            if i + 1 >= len(args):
                break
            value = args[i + 1]
            if t in ("-c", "--cmd", "--remote-send", "--remote-expr"):
                commands.append(value)
            elif t == "-S":
                an.add(
                    Level.APPROVAL,
                    f"{base} sources {value.shown}, a script of editor commands",
                    f"{base} commands",
                    argv,
                )
            elif t in ("-w", "-W"):
                check_write(an, value, f"{base} writes", argv)
            i += 2
            continue
        if t.startswith("+") and len(t) > 1:
            commands.append(_field(t[1:], f))
        elif t == "--":
            operands.extend(args[i + 1 :])
            break
        elif not t.startswith("-") or t == "-":
            operands.append(f)
        i += 1
    for cmd in commands:
        editor_command(an, base, cmd, argv)
    if ex_mode or base in ("ed", "red"):
        if stdin.data is not None:
            for line in stdin.data.decode("utf-8", "replace").splitlines():
                editor_command(an, base, Field(line, line), argv)
        elif stdin.piped:
            an.add(Level.APPROVAL, f"{base} runs editor commands it reads from a pipe", argv=argv)
    return Use(writes=[f for f in operands if f.text != "-"], precise=True)


def r_emacs(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    p = parse_options(
        argv[1:],
        spec(
            "lfL",
            "--eval --load --funcall --directory --file --insert --find-file",
            words="-eval -l -load -f -funcall",
        ),
    )
    for expr in [*p.get("--eval", "-eval"), *p.get("-e")]:
        if expr.dynamic or re.search(
            r"shell|process|call-process|delete|rename|write|copy|eval|load", expr.text
        ):
            an.add(
                Level.APPROVAL,
                f"{base} evaluates Lisp that can run programs or change files",
                f"{base} eval",
                argv,
            )
            for literal in re.findall(r"\"([^\"]*)\"", expr.text):
                an.nested(literal, f"a string in the {base} code")
    if p.get("-l", "--load", "-load"):
        an.add(Level.APPROVAL, f"{base} loads Lisp code from a file", f"{base} eval", argv)
    return Use(writes=[f for f in p.operands if not f.text.startswith("+")], precise=True)


def r_pager(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """less, more, man: ``+!CMD`` commands and ``-P``/``--pager`` run programs."""
    p = parse_options(
        argv[1:],
        spec(
            "PHoOxyzbhjkpt" if base == "less" else "PHMSCLm",
            "--pager --html --log-file --LOG-FILE --config-file --manpath",
        ),
    )
    for f in argv[1:]:
        if f.text.startswith("+") and "!" in f.text:
            an.add(Level.APPROVAL, f"{base} runs a shell command", f"{base} shell", argv)
            an.nested(f.text.split("!", 1)[1], f"the shell command given to {base}")
    if base in ("man", "info"):
        for pager in p.get("-P", "--pager", "-H", "--html"):
            runs_program(an, base, pager, argv, "its pager")
        return Use(read_only=True, precise=True)
    writes = list(p.get("-o", "-O", "--log-file", "--LOG-FILE"))
    return Use(read_only=not writes, writes=writes, precise=True)


def r_make(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """make: the recipes of a Makefile given on stdin, with ``--eval``, or written by this
    same command are shell commands."""
    p = parse_options(
        argv[1:],
        spec(
            "CfIjloWE",
            "--directory --file --makefile --include-dir --jobs --load-average --old-file "
            "--what-if --eval --new-file --assume-new --assume-old",
        ),
    )
    makefiles = p.get("-f", "--file", "--makefile")
    texts: list[tuple[str, Field]] = [(f"{base} --eval", e) for e in p.get("--eval", "-E")]
    for f in makefiles:
        if f.text in ("-", "/dev/stdin"):
            if stdin.data is not None:
                texts.append(
                    (
                        "the Makefile on stdin",
                        Field(stdin.data.decode("utf-8", "replace"), "<stdin>"),
                    )
                )
            elif stdin.piped:
                an.add(Level.APPROVAL, f"{base} runs a Makefile it reads from a pipe", argv=argv)
        else:
            data = an.files.get(an.resolve(f.text), b"")
            if data is None:
                an.add(
                    Level.APPROVAL,
                    f"{base} runs {f.shown}, which this command writes first",
                    argv=argv,
                )
            elif data:
                texts.append(
                    (f"the Makefile {f.shown}", Field(data.decode("utf-8", "replace"), f.raw))
                )
    if not makefiles:
        directory = (p.get("-C", "--directory") or [Field(".", ".")])[-1].text
        for name in ("GNUmakefile", "makefile", "Makefile"):
            path = an.resolve(directory.rstrip("/") + "/" + name)
            if path in an.files:
                data = an.files[path]
                if data is None:
                    an.add(
                        Level.APPROVAL,
                        f"{base} runs {name}, which this command writes first",
                        argv=argv,
                    )
                else:
                    texts.append(
                        (f"the Makefile {name}", Field(data.decode("utf-8", "replace"), name))
                    )
                break
    for f in p.operands:
        if "=" in f.text and re.match(r"^(SHELL|\.SHELLFLAGS|MAKEFLAGS|MAKEFILES)=", f.text):
            an.add(Level.APPROVAL, f"{base} {f.shown} changes how recipes run", argv=argv)
    for what, text in texts:
        if text.dynamic:
            an.add(Level.APPROVAL, f"{what} is only known when it runs", argv=argv)
            continue
        makefile_recipes(an, text.text, what)
    return Use()


def makefile_recipes(an: Analysis, text: str, what: str) -> None:
    """Check every recipe line (tab-indented) and ``$(shell ...)`` of a Makefile."""
    lines = text.replace("\\\n", " ").splitlines()
    for line in lines:
        if line.startswith("\t"):
            body = line[1:].lstrip("@-+ ")
            an.nested(body.replace("$$", "$"), f"a recipe in {what}")
    for m in re.finditer(r"\$[({]shell\s+([^)}]*)[)}]", text):
        an.nested(m.group(1), f"$(shell ...) in {what}")


def r_dc(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """dc's ``!`` runs the rest of the line in a shell."""
    texts = [f for i, f in enumerate(argv[1:]) if i > 0 and argv[i].text in ("-e", "--expression")]
    if stdin.data is not None:
        texts.append(Field(stdin.data.decode("utf-8", "replace"), "<stdin>"))
    for f in texts:
        for m in re.finditer(r"!([^\n]*)", f.text):
            an.add(Level.APPROVAL, "dc runs a shell command", "dc shell", argv)
            an.nested(m.group(1), "the shell command given to dc")
    return Use()


def r_m4(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    texts = [f.text for f in argv[1:] if not f.dynamic]
    if stdin.data is not None:
        texts.append(stdin.data.decode("utf-8", "replace"))
    for text in texts:
        for m in re.finditer(r"e?syscmd\(\s*`?([^')]*)", text):
            an.add(Level.APPROVAL, "m4 runs a shell command", "m4 syscmd", argv)
            an.nested(m.group(1), "the command given to m4 syscmd")
    return Use(read_only=True)


def r_sql_client(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    p = parse_options(
        argv[1:], spec("euhpPDS", "--execute --user --host --port --database --socket")
    )
    for f in p.get("-e", "--execute"):
        sql_commands(an, base, f, argv)
        if re.search(r"(?im)^\s*system\s+(.*)$", f.text):
            an.nested(re.findall(r"(?im)^\s*system\s+(.*)$", f.text)[0], f"{base} system")
    if stdin.data is not None:
        sql_commands(an, base, Field(stdin.data.decode("utf-8", "replace"), "<stdin>"), argv)
    return Use()


def r_sg(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """``sg GROUP [-c] CMD``: the command is a shell string."""
    args = [f for f in argv[1:] if f.text not in ("-", "-c")]
    an.add(Level.APPROVAL, f"runs with another group's rights ({base})", base, argv)
    if len(args) > 1:
        _string(an, base, _joined(args[1:]), argv)
    elif base == "newgrp":
        an.runs_stdin(base, stdin, argv, True)
    return Use()


def r_flock(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    """``flock [opts] FILE CMD...`` or ``flock [opts] FILE -c CMD``."""
    args = argv[1:]
    for i, f in enumerate(args):
        if f.text in ("-c", "--command") and i + 1 < len(args):
            _string(an, base, args[i + 1], argv)
            return NO_OUTPUT
    return r_wrapper(
        an,
        base,
        argv,
        stdin,
        noarg="sxnouFe",
        witharg="wEz",
        positional=1,
        long_witharg=("--timeout", "--conflict-exit-code"),
    )


def r_hyperfine(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    p = parse_options(
        argv[1:],
        spec(
            "wrmMpcsSnLP",
            "--warmup --runs --min-runs --max-runs --prepare --cleanup --setup --conclude "
            "--shell --command-name --parameter-scan --parameter-list --export-json "
            "--export-markdown --export-csv --output",
        ),
    )
    for f in [
        *p.operands,
        *p.get("-p", "--prepare", "-c", "--cleanup", "-s", "--setup", "--conclude"),
    ]:
        _string(an, base, f, argv)
    return Use(
        writes=list(p.get("--export-json", "--export-markdown", "--export-csv")), precise=True
    )


def r_nix_shell(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output | Use:
    args = argv[1:]
    for i, f in enumerate(args):
        if f.text in ("--run", "--command") and i + 1 < len(args):
            _string(an, base, args[i + 1], argv)
        if base == "nix" and f.text in ("-c", "--command") and i + 1 < len(args):
            return an.check_argv(list(args[i + 1 :]), NO_INPUT)
    return Use()


def r_entr(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    args = argv[1:]
    found, _ = scan_operands(args, noarg="acdnprsz")
    if not found:
        return NO_OUTPUT
    if any(f.text.startswith("-") and "s" in f.text for f in args[: found[0]]):
        _string(an, base, args[found[0]], argv)
        return NO_OUTPUT
    return an.check_argv(list(args[found[0] :]), NO_INPUT)


def r_pee(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    for f in argv[1:]:
        if not f.text.startswith("-"):
            _string(an, base, f, argv)
    return Use()


def r_ssh(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """ssh: ``-o ProxyCommand=...``/``LocalCommand`` run locally; the remote command is
    checked too (it may be this very machine)."""
    p = parse_options(argv[1:], spec("BbcDEeFIiJLlmOoPpQRSWw"))
    for opt in p.get("-o"):
        ssh_option(an, base, opt, argv)
    if base == "ssh" and len(p.operands) > 1:
        args = argv[1:]
        found, _ = scan_operands(
            args, noarg="46AaCfGgKkMNnqsTtVvXxYy", witharg="BbcDEeFIiJLlmOoPpQRSWw"
        )
        if found and found[0] + 1 < len(args):
            remote = list(args[found[0] + 1 :])
            if any(f.dynamic for f in remote):
                an.add(
                    Level.APPROVAL, "ssh runs a remote command only known when it runs", argv=argv
                )
            else:
                an.nested(" ".join(f.text for f in remote), "the remote command given to ssh")
    if base == "sftp":
        for f in p.get("-S", "-D"):
            runs_program(an, base, f, argv, "its ssh program")
        for batch in p.get("-b"):
            if batch.text in ("-", "/dev/stdin") and stdin.data is not None:
                for m in re.finditer(r"(?m)^\s*!(.*)$", stdin.data.decode("utf-8", "replace")):
                    an.nested(m.group(1), "a local command in the sftp batch")
    return Use()


def r_package_hooks(an: Analysis, base: str, argv: list[Field], stdin: Input) -> None:
    """dpkg/apt options whose values are commands run around the installation."""
    args = argv[1:]
    for i, f in enumerate(args):
        t = f.text
        value: Field | None = None
        if t.startswith(("--pre-invoke=", "--post-invoke=", "--status-logger=")):
            value = _field(t.split("=", 1)[1], f)
        elif t in ("--pre-invoke", "--post-invoke", "--status-logger") and i + 1 < len(args):
            value = args[i + 1]
        elif (t == "-o" and i + 1 < len(args)) or (t.startswith("-o") and len(t) > 2):
            opt = args[i + 1] if t == "-o" else _field(t[2:], f)
            key, _, val = opt.text.partition("=")
            if re.search(r"(?i)invoke|pre-install-pkgs|::program|::options|hook|::pager|cmd", key):
                value = _field(val, opt)
        if value is not None:
            runs_program(an, base, value, argv, "a package-manager hook")


# --- the table ------------------------------------------------------------------------------

#: Every program here, with an example that runs ``{a}`` (the payload as words) or ``{s}``
#: (the payload as one quoted string). Used by the tests: each must refuse ``rm -rf ~``.
RUNS: dict[str, str] = {
    "script": "script -q -c {s} /dev/null",
    "tmux": "tmux new-session -d -s x {s}",
    "screen": "screen -dmS x {a}",
    "parallel": "echo {s} | parallel",
    "sem": "sem --id x {s}",
    "at": "echo {s} | at now",
    "batch": "echo {s} | batch",
    "gdb": "gdb -batch -ex {s_shell}",
    "lldb": "lldb -o {s_platform}",
    "expect": "expect -c {s_spawn}",
    "vim": "vim -c {s_bang} -c q",
    "vi": "vi -c {s_bang}",
    "nvim": "nvim --headless -c {s_bang}",
    "ex": "ex -c {s_bang} file",
    "ed": "ed -s file <<< {s_bang}",
    "make": "make -f - <<'EOF'\nall:\n\t{a}\nEOF",
    "busybox": "busybox sh -c {s}",
    "flock": "flock /tmp/lock {a}",
    "setsid": "setsid {a}",
    "stdbuf": "stdbuf -oL {a}",
    "chroot": "chroot / {a}",
    "unshare": "unshare -r {a}",
    "nsenter": "nsenter -t 1 -m {a}",
    "su": "su -c {s}",
    "runuser": "runuser -u me -- {a}",
    "doas": "doas {a}",
    "pkexec": "pkexec {a}",
    "ionice": "ionice -c 3 {a}",
    "sg": "sg users {s}",
    "dtach": "dtach -n /tmp/sock {a}",
    "nohup": "nohup {a}",
    "rlwrap": "rlwrap {a}",
    "cgexec": "cgexec -g cpu:g {a}",
    "systemd-run": "systemd-run --user {a}",
    "firejail": "firejail --quiet {a}",
    "xargs": "echo x | xargs -I{{}} {a}",
    "find": "find . -maxdepth 0 -execdir {a} \\;",
    "git": "git -c alias.x={s_bang_plain} x",
    "env": "env -S {s}",
    "awk": "awk {s_awk}",
    "sed": "sed -n {s_sed} file",
    "less": "less {s_plus_bang} file",
    "man": "man -P {s} ls",
    "rsync": "rsync -e {s} a host:b",
    "ssh": "ssh -o ProxyCommand={s_eq} host",
    "tar": "tar --to-command={s_eq} -xf a.tar",
    "zip": "zip -T -TT {s} a.zip f",
    "dpkg": "dpkg --pre-invoke={s_eq} -i x.deb",
    "apt-get": "apt-get -o APT::Update::Pre-Invoke::={s_eq} update",
    "perl": "perl -MFile::Path -e {s_perl}",
    "python": "python3 -c {s_python}",
    "ruby": "ruby -e {s_ruby}",
    "node": "node -e {s_node}",
    "timeout": "timeout 5 {a}",
    "nice": "nice {a}",
    "watch": "watch {s}",
    "sudo": "sudo {a}",
    "time": "time {a}",
    "strace": "strace -f {a}",
    "sqlite3": "sqlite3 x.db {s_dotshell}",
    "psql": "psql -c {s_psql}",
    "hyperfine": "hyperfine {s}",
    "nix-shell": "nix-shell --run {s}",
    "entr": "ls | entr -s {s}",
    "pee": "echo | pee {s}",
    "xterm": "xterm -e {a}",
    "gnome-terminal": "gnome-terminal -- {a}",
    "flatpak-spawn": "flatpak-spawn --host {a}",
    "emacs": "emacs --batch --eval {s_elisp}",
    "dc": "dc -e {s_dc}",
    "m4": "echo {s_m4} | m4",
    "numactl": "numactl --interleave=all {a}",
    "prlimit": "prlimit --nofile=10 {a}",
    "taskset": "taskset 1 {a}",
    "chrt": "chrt 1 {a}",
    "setarch": "setarch x86_64 {a}",
    "fakeroot": "fakeroot -- {a}",
    "bwrap": "bwrap --bind / / {a}",
    "abduco": "abduco -c s {a}",
    "eatmydata": "eatmydata {a}",
    "chronic": "chronic {a}",
    "ifne": "echo x | ifne {a}",
    "unbuffer": "unbuffer {a}",
    "exec": "exec {a}",
    "command": "command {a}",
    "builtin": "builtin eval {s}",
    "coproc": "coproc {a}",
    "direnv": "direnv exec . {a}",
    "uv": "uv run {a}",
    "npx": "npx --yes {a}",
    "konsole": "konsole -e {a}",
    "x-terminal-emulator": "x-terminal-emulator -e {a}",
    "socat": "socat - EXEC:{s_eq}",
    "tclsh": "tclsh <<< {s_tcl}",
    "ruby-x": "ruby -e {s_ruby_x}",
    "lua": "lua -e {s_lua}",
    "php": "php -r {s_php}",
}


def _with_hooks(rule: Rule) -> Rule:
    def run(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output | Use:
        r_package_hooks(an, base, argv, stdin)
        return rule(an, base, argv, stdin)

    return run


RULES: dict[str, Rule] = {
    **{name: _with_hooks(r_package) for name in ("dpkg", "apt", "apt-get", "aptitude")},
    "script": r_script,
    "at": r_at,
    "batch": r_at,
    "systemd-run": r_systemd_run,
    "flatpak-spawn": r_flatpak_spawn,
    "tmux": r_tmux,
    "screen": r_screen,
    "parallel": r_parallel,
    "sem": r_parallel,
    "gdb": r_gdb,
    "lldb": r_gdb,
    "expect": r_expect,
    "make": r_make,
    "gmake": r_make,
    "dc": r_dc,
    "m4": r_m4,
    "mysql": r_sql_client,
    "mariadb": r_sql_client,
    "sg": r_sg,
    "newgrp": r_sg,
    "flock": r_flock,
    "hyperfine": r_hyperfine,
    "nix-shell": r_nix_shell,
    "nix": r_nix_shell,
    "entr": r_entr,
    "pee": r_pee,
    "ssh": r_ssh,
    "sftp": r_ssh,
    "emacs": r_emacs,
    "emacsclient": r_emacs,
    "less": r_pager,
    "more": r_pager,
    "most": r_pager,
    "man": r_pager,
    "info": r_pager,
    **{
        name: r_editor
        for name in (
            "vim",
            "vi",
            "nvim",
            "gvim",
            "view",
            "vimdiff",
            "rvim",
            "ex",
            "nex",
            "ed",
            "red",
            "vim.basic",
            "vim.tiny",
            "nano",
            "pico",
            "micro",
            "joe",
            "mcedit",
            "kak",
            "hx",
            "helix",
            "jed",
            "ne",
            "mg",
        )
    },
    "unshare": _wrap(
        noarg="mupinUCTrfckl",
        witharg="SGRwt",
        longs="--setuid --setgid --root --wd --map-user --map-group --propagation",
    ),
    "nsenter": _wrap(
        noarg="aFmuinpUCTrw", witharg="tSGRw", longs="--target --setuid --setgid --root --wd"
    ),
    "cgexec": _wrap(witharg="g", longs="--sticky"),
    "rlwrap": _wrap(noarg="aAcEimnNoprRUvWX", witharg="bCDefgHlMOPqsStwz"),
    "numactl": _wrap(noarg="alsH", witharg="NmCpPiw"),
    "prlimit": _wrap(noarg="", witharg="po"),
    "setarch": _wrap(noarg="vRFLBXSTZ3", positional=1),
    "linux32": _wrap(noarg="vRFLBXSTZ3"),
    "linux64": _wrap(noarg="vRFLBXSTZ3"),
    "faketime": _wrap(noarg="f", witharg="m", positional=1),
    "fakeroot": _wrap(witharg="is", longs="--lib --faked"),
    "proot": _wrap(noarg="0v", witharg="rbmwqk"),
    "bwrap": _any_start,
    "dtach": _wrap(noarg="z", witharg="AacnNer"),
    "abduco": _wrap(noarg="flrq", witharg="cnAae"),
    "eatmydata": _wrap(),
    "chronic": _wrap(noarg="ve"),
    "ifne": _wrap(noarg="n"),
    "nocache": _wrap(),
    "chpst": _wrap(noarg="vPo0120", witharg="ugUe/nlmdosfcrt"),
    "envdir": _wrap(positional=1),
    "setuidgid": _wrap(positional=1),
    "softlimit": _wrap(witharg="mdsloaprfct"),
    "direnv": _wrap(positional=2),
    "xterm": _after("-e"),
    "uxterm": _after("-e"),
    "konsole": _after("-e"),
    "alacritty": _after("-e", "--command"),
    "st": _after("-e"),
    "urxvt": _after("-e"),
    "rxvt": _after("-e"),
    "foot": _after(),
    "kitty": _after(),
    "x-terminal-emulator": _after("-e", "-x"),
    "gnome-terminal": _after("--", "-x"),
    "xfce4-terminal": _after("-x", string_markers=("-e", "--command")),
    "terminator": _after("-x", string_markers=("-e", "--command")),
    "tilix": _after(string_markers=("-e", "--command")),
    "lxterminal": _after(string_markers=("-e", "--command")),
    "wezterm": _after("--"),
}
