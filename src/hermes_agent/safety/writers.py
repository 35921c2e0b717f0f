"""Commands whose files are named by options: what they write, and what they read.

A write target is often an option's value rather than an operand (``sort -o
F``, ``curl -sSLo F``, ``tar -x -C DIR``, ``cp -t DIR``), and a read may be a
whole tree (``grep -r``, ``tar c``, ``cp -r``). Each command here has a
:class:`~hermes_agent.safety.options.Spec` (which of its letters and long
options take an argument) and a small function that, given the sorted words,
says which are written, written *into* (a directory receiving files of names
not known here) or read as a tree. :mod:`hermes_agent.safety.targets` then
judges each path like any other write or read, so ``sort -o ~/.bashrc`` asks
and ``tar -x -C ~/.hermes`` is refused for the same reason ``> ~/.bashrc``
asks and ``> ~/.hermes/config.yaml`` is refused.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from hermes_agent.safety.commands import Rule
from hermes_agent.safety.flow import Input, Output, Use
from hermes_agent.safety.hermes_cli import record_copy
from hermes_agent.safety.options import Parsed, Spec, parse_options, spec
from hermes_agent.safety.targets import HERE, check_mentions, check_read, check_write
from hermes_agent.safety.verdict import Level
from hermes_agent.safety.words import UNKNOWN, Field

if TYPE_CHECKING:
    from hermes_agent.safety.parse import Analysis

#: A role function: (analysis, name, words, sorted words, stdin) -> what it touches.
Roles = Callable[["Analysis", str, list[Field], Parsed, Input], Use]


def _field(text: str, like: Field) -> Field:
    return Field(text, like.raw, like.dynamic)


def _last(values: list[Field]) -> Field | None:
    return values[-1] if values else None


def _local(f: Field) -> bool:
    """A local path (not ``host:path``, a URL, ``-`` or empty)."""
    t = f.text
    if not t or t == "-":
        return False
    head = t.split("/", 1)[0]
    return not (":" in head and not t.startswith(("/", ".", "~")))


def runs_program(an: Analysis, base: str, f: Field, argv: list[Field], what: str) -> None:
    """An option whose value is a command line the program runs (``tar -I``, ``rsync -e``)."""
    an.add(Level.APPROVAL, f"{base} runs a program of the caller's choice ({what})", argv=argv)
    an.shell_string(base, f, argv)


def _under(directory: Field, operand: Field) -> Field:
    """``operand`` as seen from ``directory`` (``tar -C DIR x``, ``cp -t DIR x``)."""
    if operand.text.startswith("/") or directory.text.startswith(UNKNOWN):
        return operand
    return _field(posixpath.join(directory.text, operand.text), operand)


def _into(an: Analysis, directory: Field, sources: list[Field]) -> list[Field]:
    """The files a copy of ``sources`` into ``directory`` writes (their basenames)."""
    out = []
    for src in sources:
        name = posixpath.basename(src.text.rstrip("/")) or src.text
        out.append(_field(posixpath.join(directory.text, name), src))
    return out


def _is_dir(an: Analysis, f: Field) -> bool:
    if f.text.endswith("/"):
        return True
    path = an.real(f.text)
    return path.startswith("/") and os.path.isdir(path)


# --- copies, moves, links -------------------------------------------------------------


def copy_roles(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    """cp, mv, install, ln, rsync, scp: destinations written; trees read when recursive."""
    recursive = base in ("mv", "rsync") and p.has("r", "a", "--recursive", "--archive")
    recursive = recursive or (
        base in ("cp", "scp") and p.has("r", "R", "a", "--recursive", "--archive")
    )
    if base == "mv":
        recursive = True
    sources = [f for f in p.operands if _local(f)]
    target_dir = _last(p.get("-t", "--target-directory"))
    dest: Field | None = None
    if target_dir is None and len(p.operands) >= 2:
        dest = p.operands[-1]
        sources = [f for f in p.operands[:-1] if _local(f)]
    if base in ("rsync", "scp"):
        for cmd in p.get("-e", "--rsh"):
            runs_program(an, base, cmd, argv, "its remote shell")
        for opt in p.get("-o"):
            ssh_option(an, base, opt, argv)
        for cmd in p.get("-S"):
            runs_program(an, base, cmd, argv, "its ssh program")
        for f in p.get("--log-file", "--write-batch", "--only-write-batch"):
            check_write(an, f, f"{base} writes", argv)
    writes: list[Field] = []
    into: list[Field] = []
    trees: list[Field] = []
    if dest is not None and not _local(dest):
        dest = None  # a remote destination: the local side only reads
    if base == "ln":
        return _link(an, argv, p, sources, target_dir, dest)
    if target_dir is not None or (
        dest is not None
        and (len(sources) > 1 or _is_dir(an, dest))
        and not p.has("T", "--no-target-directory")
        and not (base == "install" and p.has("D"))
    ):
        directory = target_dir if target_dir is not None else dest
        assert directory is not None
        if base == "rsync" and any(s.text.endswith("/") for s in sources):
            into.append(directory)  # `rsync -a src/ dst`: the contents of src go into dst
        named = _into(an, directory, sources)
        writes.extend(named)
        if recursive:
            into.extend(named)
    elif dest is not None:
        writes.append(dest)
        if recursive:
            into.append(dest)
    if recursive and base != "mv":
        trees.extend(sources)
    record_copy(an, sources, writes)
    if base == "mv":
        writes.extend(sources)
    return Use(writes=writes, into=into, trees=trees, precise=True, sweeping=base == "mv")


def _link(
    an: Analysis,
    argv: list[Field],
    p: Parsed,
    sources: list[Field],
    target_dir: Field | None,
    dest: Field | None,
) -> Use:
    """ln: the link is written; a symbolic link is remembered for later words, and a hard
    link to a protected file is judged as a write of that file."""
    symbolic = p.has("s", "--symbolic")
    if dest is None and target_dir is None and len(sources) == 1:
        dest = _field(posixpath.basename(sources[0].text.rstrip("/")), sources[0])
        sources = p.operands[:1]
    if target_dir is not None or (dest is not None and _is_dir(an, dest) and not p.has("n", "T")):
        directory = target_dir if target_dir is not None else dest
        assert directory is not None
        links = list(
            zip(
                p.operands if target_dir is not None else sources,
                _into(an, directory, sources),
                strict=False,
            )
        )
    else:
        links = list(zip(sources, [dest] * len(sources), strict=False)) if dest is not None else []
    for target, link in links:
        if link is None:
            continue
        # The link is judged where it is made, before it exists (not through itself).
        check_write(an, link, "ln writes", argv)
        if link.dynamic or target.dynamic:
            continue
        if symbolic:
            an.add_link(link.text, target.text)
        else:
            check_write(an, target, "ln makes a hard link to", argv)
    return Use(precise=True)


def ssh_option(an: Analysis, base: str, opt: Field, argv: list[Field]) -> None:
    """``-o Key=Value`` of ssh and friends: some keys are commands ssh runs locally."""
    key, _, value = opt.text.partition("=")
    if not value and " " in key:
        key, _, value = key.partition(" ")
    if key.strip().lower() in _SSH_COMMAND_KEYS:
        runs_program(an, base, _field(value.strip(), opt), argv, f"ssh option {key.strip()}")


_SSH_COMMAND_KEYS = frozenset(
    ("proxycommand", "localcommand", "knownhostscommand", "permitlocalcommand", "match")
)


# --- writers whose target is an option --------------------------------------------------


def option_writer(
    *write_opts: str, operand_write: str = "", into_opts: tuple[str, ...] = ()
) -> Roles:
    """Roles for a command whose option values (``-o F``) are files it writes.

    ``operand_write``: ``"all"`` (every operand is rewritten in place), ``"second"``
    (``uniq IN OUT``), ``"first"`` (``patch FILE``, ``sqlite3 DB``), or ``""``.
    """

    def roles(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
        writes = [f for f in p.get(*write_opts) if f.text != "-"]
        into = list(p.get(*into_opts))
        ops = p.operands
        if operand_write == "all":
            writes.extend(ops)
        elif operand_write == "second" and len(ops) > 1:
            writes.append(ops[1])
        elif operand_write == "first" and ops:
            writes.append(ops[0])
        return Use(writes=writes, into=into, precise=True)

    return roles


def _sort(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    for cmd in p.get("--compress-program"):
        runs_program(an, base, cmd, argv, "--compress-program")
    return Use(writes=[f for f in p.get("-o", "--output") if f.text != "-"], precise=True)


def _patch(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    writes = [f for f in p.get("-o", "--output", "-r", "--reject-file") if f.text != "-"]
    directory = _last(p.get("-d", "--directory"))
    into: list[Field] = []
    if p.operands:
        target = p.operands[0]
        writes.append(_under(directory, target) if directory is not None else target)
    elif not p.get("-o", "--output"):
        # The files come from the patch itself: anything under the directory.
        into.append(directory if directory is not None else HERE)
    return Use(writes=writes, into=into, precise=True)


def _compressor(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    """gzip and friends replace each operand with its (de)compressed form."""
    if p.has("c", "t", "l", "--stdout", "--to-stdout", "--test", "--list"):
        return Use(read_only=True, precise=True)
    writes = [f for f in p.get("-o", "--output") if f.text != "-"]
    writes.extend(p.operands)
    return Use(writes=writes, precise=True)


def _in_place(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    """yq -i, sd: the files after the expression are rewritten in place."""
    if base == "sd":
        return Use(writes=p.operands[2:], precise=True)
    if p.has("i", "--inplace"):
        return Use(writes=p.operands[1:], precise=True)
    return Use(read_only=True, precise=True)


def _split(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    for cmd in p.get("--filter"):
        runs_program(an, base, cmd, argv, "--filter")
    writes: list[Field] = []
    if base == "csplit":
        writes.extend(p.get("-f", "--prefix"))
    elif len(p.operands) > 1:
        writes.append(p.operands[1])
    return Use(writes=writes, precise=True)


def _tar(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    for name in ("-I", "--use-compress-program", "--to-command", "--info-script", "-F"):
        for cmd in p.get(name):
            runs_program(an, base, cmd, argv, name)
    for name in ("--new-volume-script", "--rsh-command", "--rmt-command"):
        for cmd in p.get(name):
            runs_program(an, base, cmd, argv, name)
    for action in p.get("--checkpoint-action"):
        if action.text.startswith("exec="):
            runs_program(an, base, _field(action.text[5:], action), argv, "--checkpoint-action")
    create = p.has("c", "r", "u", "A", "--create", "--append", "--update", "--concatenate")
    extract = p.has("x", "--extract", "--get")
    archives = [f for f in p.get("-f", "--file") if f.text != "-"]
    directory = _last(p.get("-C", "--directory"))
    writes = list(p.get("-g", "--listed-incremental", "--index-file"))
    into: list[Field] = []
    trees: list[Field] = []
    if create:
        writes.extend(archives)
        for f in p.operands:
            trees.append(_under(directory, f) if directory is not None else f)
    elif extract:
        into.append(directory if directory is not None else HERE)
    return Use(writes=writes, into=into, trees=trees, precise=True)


def _zip(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    for cmd in p.get("-TT", "--unzip-command"):
        runs_program(an, base, cmd, argv, "-TT")
    writes = list(p.get("-O", "--output-file"))
    trees: list[Field] = []
    if p.operands:
        writes.append(p.operands[0])
        if p.has("r", "R", "--recurse-paths", "--recurse-patterns"):
            trees.extend(p.operands[1:])
    return Use(writes=writes, trees=trees, precise=True)


def _unzip(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    if p.has("l", "t", "v", "p", "Z", "z"):
        return Use(read_only=True, precise=True)
    into = list(p.get("-d")) or [HERE]
    return Use(into=into, precise=True)


def _7z(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    ops = p.operands
    verb = ops[0].text if ops else ""
    out_dirs = [
        _field(f.text[2:], f) for f in argv[1:] if f.text.startswith("-o") and len(f.text) > 2
    ]
    if verb in ("x", "e"):
        return Use(into=out_dirs or [HERE], precise=True)
    if verb in ("a", "u", "d", "rn") and len(ops) > 1:
        return Use(writes=[ops[1]], trees=ops[2:] if verb in ("a", "u") else [], precise=True)
    return Use(read_only=True, precise=True)


def _curl(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    writes = [
        f
        for f in p.get(
            "-o",
            "--output",
            "-D",
            "--dump-header",
            "-c",
            "--cookie-jar",
            "--trace",
            "--trace-ascii",
            "--stderr",
            "--libcurl",
            "--etag-save",
            "--hsts",
            "--alt-svc",
        )
        if f.text not in ("-", "%")
    ]
    into = list(p.get("--output-dir"))
    reads = list(p.get("-T", "--upload-file", "-K", "--config", "-E", "--cert", "--key"))
    for value in p.get(
        "-d",
        "--data",
        "--data-binary",
        "--data-urlencode",
        "--data-ascii",
        "-F",
        "--form",
        "--json",
        "--variable",
    ):
        text = value.text
        at = text.find("@") if "@" in text else text.find("<")
        if at >= 0 and (at == 0 or text[at - 1] in "=;"):
            reads.append(_field(text[at + 1 :].split(";", 1)[0], value))
    return _with_reads(an, argv, Use(writes=writes, into=into, precise=True), reads)


def _wget(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    writes = [
        f
        for f in p.get(
            "-O",
            "--output-document",
            "-o",
            "--output-file",
            "-a",
            "--append-output",
            "--save-cookies",
            "--warc-file",
        )
        if f.text != "-"
    ]
    into = list(p.get("-P", "--directory-prefix"))
    for command in p.get("-e", "--execute"):
        an.add(
            Level.APPROVAL,
            f"wget -e runs a wgetrc command ({command.shown}), which can redirect its output",
            argv=argv,
        )
    for cmd in p.get("--use-askpass"):
        runs_program(an, base, cmd, argv, "--use-askpass")
    reads = list(p.get("-i", "--input-file", "--post-file", "--body-file", "--load-cookies"))
    return _with_reads(an, argv, Use(writes=writes, into=into, precise=True), reads)


def _aria2c(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    directory = _last(p.get("-d", "--dir"))
    writes = [_under(directory, f) if directory is not None else f for f in p.get("-o", "--out")]
    into = [directory] if directory is not None else []
    for f in p.get("--on-download-complete", "--on-download-start", "--on-download-error"):
        runs_program(an, base, f, argv, "a download hook")
    return _with_reads(an, argv, Use(writes=writes, into=into, precise=True), p.get("-i"))


def _httpie(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    reads = []
    for f in p.operands:
        if "@" in f.text and not f.text.startswith("http"):
            reads.append(_field(f.text.split("@", 1)[1], f))
    return _with_reads(an, argv, Use(writes=list(p.get("-o", "--output")), precise=True), reads)


def _with_reads(an: Analysis, argv: list[Field], use: Use, reads: list[Field]) -> Use:
    for f in reads:
        if f.text not in ("-", ""):
            check_read(an, f, argv)
    return use


def _sqlite(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    texts = [*p.get("-cmd"), *p.operands[1:]]
    if stdin.data is not None:
        texts.append(Field(stdin.data.decode("utf-8", "replace"), "<stdin>"))
    elif stdin.piped:
        an.add(Level.APPROVAL, f"{base} runs statements it reads from a pipe", argv=argv)
    for f in texts:
        sql_commands(an, base, f, argv)
    writes = [] if p.has("-readonly") or not p.operands else [p.operands[0]]
    return Use(writes=writes, precise=True)


_DOT_SHELL = re.compile(r"(?m)^\s*\.(shell|system)\s+(.*)$")
_DOT_OUTPUT = re.compile(r"(?m)^\s*\.(output|once|log)\s+(\S+)")


def sql_commands(an: Analysis, base: str, f: Field, argv: list[Field]) -> None:
    """sqlite3 dot-commands and psql meta-commands that run programs or write files."""
    if f.dynamic:
        an.add(Level.APPROVAL, f"{base} runs statements only known when it runs", argv=argv)
        return
    text = f.text
    for m in _DOT_SHELL.finditer(text):
        runs_program(an, base, _field(m.group(2), f), argv, f".{m.group(1)}")
    for m in _DOT_OUTPUT.finditer(text):
        target = m.group(2)
        if target.startswith("|"):
            runs_program(an, base, _field(target[1:], f), argv, f".{m.group(1)} |")
        else:
            check_write(an, _field(target, f), f"{base} .{m.group(1)} writes", argv)
    for m in re.finditer(r"\\!\s*([^\n]*)", text):
        runs_program(an, base, _field(m.group(1), f), argv, "\\!")
    if re.search(r"(?i)\.load\b|load_extension\s*\(|\bwritefile\s*\(|\bedit\s*\(", text):
        an.add(
            Level.APPROVAL,
            f"{base} loads native code or writes files from SQL",
            f"{base} extension",
            argv,
        )


def _psql(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    for f in p.get("-c", "--command"):
        sql_commands(an, base, f, argv)
    if stdin.data is not None:
        sql_commands(an, base, Field(stdin.data.decode("utf-8", "replace"), "<stdin>"), argv)
    writes = list(p.get("-o", "--output", "-L", "--log-file"))
    return Use(writes=writes, precise=True)


def _openssl(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    return Use(writes=list(p.get("-out", "-keyout")), precise=True)


# --- readers of whole trees -------------------------------------------------------------


def _grep(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    recursive = base == "rgrep" or p.has("r", "R", "--recursive", "--dereference-recursive")
    recursive = recursive or any(f.text == "recurse" for f in p.get("-d", "--directories"))
    ops = list(p.operands)
    if not p.get("-e", "--regexp", "-f", "--file") and ops:
        ops = ops[1:]  # the pattern
    for f in p.get("-f", "--file"):
        check_read(an, f, argv)
    if recursive:
        return Use(read_only=True, precise=True, trees=ops or [Field(".", ".")])
    return Use(read_only=True, precise=True, writes=[])


def _ripgrep(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    for cmd in p.get("--pre"):
        runs_program(an, base, cmd, argv, "--pre")
    ops = list(p.operands)
    if not p.get("-e", "--regexp", "-f", "--file") and not p.has("--files") and ops:
        ops = ops[1:]
    hidden = p.has(".", "--hidden", "--unrestricted", "-a", "--all-types") or any(
        f.text.startswith("-") and f.text.count("u") >= 2 for f in argv[1:]
    )
    trees = ops or [Field(".", ".")]
    if not hidden:
        for t in trees:
            check_read(an, t, argv, tree=True, hidden=False)
        return Use(read_only=True, precise=True)
    return Use(read_only=True, precise=True, trees=trees)


def _diff(an: Analysis, base: str, argv: list[Field], p: Parsed, stdin: Input) -> Use:
    if p.has("r", "--recursive"):
        return Use(read_only=True, precise=True, trees=list(p.operands))
    return Use(read_only=True, precise=True)


#: name -> (options that take an argument, what the words mean).
WRITERS: dict[str, tuple[Spec, Roles]] = {
    "cp": (spec("tS", "--target-directory --suffix"), copy_roles),
    "mv": (spec("tS", "--target-directory --suffix"), copy_roles),
    "install": (spec("tmogS", "--target-directory --suffix --mode --owner --group"), copy_roles),
    "ln": (spec("tS", "--target-directory --suffix"), copy_roles),
    "rsync": (
        spec(
            "eBfTM",
            "--rsh --filter --exclude --include --exclude-from --include-from --files-from "
            "--temp-dir --rsync-path --log-file --partial-dir --backup-dir --compare-dest "
            "--copy-dest --link-dest --chmod --chown --timeout --port --password-file "
            "--max-size --min-size --bwlimit --suffix --out-format --write-batch "
            "--only-write-batch --read-batch --remote-option",
        ),
        copy_roles,
    ),
    "scp": (spec("cFiJlPoSDX"), copy_roles),
    "sort": (
        spec(
            "kotST",
            "--key --output --field-separator --buffer-size --temporary-directory "
            "--files0-from --compress-program --random-source --batch-size --parallel",
        ),
        _sort,
    ),
    "shuf": (
        spec("inoe", "--input-range --head-count --output --random-source"),
        option_writer("-o", "--output"),
    ),
    "uniq": (
        spec("fsw", "--skip-fields --skip-chars --check-chars"),
        option_writer(operand_write="second"),
    ),
    "iconv": (spec("fto", "--from-code --to-code --output"), option_writer("-o", "--output")),
    "patch": (
        spec(
            "BDdFgiopVYzrx",
            "--prefix --ifdef --directory --fuzz --get --input --output --strip --reject-file "
            "--version-control --basename-prefix --suffix --quoting-style",
        ),
        _patch,
    ),
    "split": (
        spec(
            "abClnt",
            "--suffix-length --bytes --line-bytes --lines --number --separator --additional-suffix",
        ),
        _split,
    ),
    "csplit": (spec("bfn", "--suffix-format --prefix --digits"), _split),
    "tar": (
        spec(
            "bCfFgHIKLNTVX",
            "--file --directory --files-from --exclude-from --exclude --listed-incremental "
            "--format --owner --group --mode --transform --label --index-file --to-command "
            "--use-compress-program --info-script --new-volume-script --rsh-command "
            "--rmt-command --blocking-factor --exclude-tag",
            old_style=True,
        ),
        _tar,
    ),
    "zip": (spec("bnPtO", "--output-file --unzip-command", words="-TT -tt"), _zip),
    "unzip": (spec("dPIO"), _unzip),
    "7z": (spec(""), _7z),
    "7za": (spec(""), _7z),
    "7zr": (spec(""), _7z),
    "sqlite3": (spec("", words="-cmd -init -separator -nullvalue -newline -vfs -mmap"), _sqlite),
    "psql": (
        spec(
            "cdfhLopUvPTF",
            "--command --dbname --file --host --log-file --output --port --username --set "
            "--variable",
        ),
        _psql,
    ),
    "openssl": (
        spec("", words="-out -in -keyout -key -inkey -passin -passout -config -CAfile -cert"),
        _openssl,
    ),
    "objcopy": (spec("IOBjRKNGWLbiF"), option_writer(operand_write="second")),
    "strip": (spec("oRKNFI"), option_writer("-o", operand_write="all")),
    "xxd": (spec("cglosnC"), option_writer(operand_write="second")),
    "base64": (spec("wio"), option_writer("-o")),
    "gpg": (
        spec("ourRfNs", "--output --recipient --local-user --homedir"),
        option_writer("-o", "--output"),
    ),
    "dos2unix": (spec("n"), option_writer(operand_write="all")),
    "unix2dos": (spec("n"), option_writer(operand_write="all")),
    "sponge": (spec(""), option_writer(operand_write="all")),
    "pandoc": (
        spec("oftrw", "--output --from --to --read --write"),
        option_writer("-o", "--output"),
    ),
    "yq": (spec("", "--front-matter --output-format --input-format"), _in_place),
    "sd": (spec("f", "--flags"), _in_place),
    "curl": (
        spec(
            "AbcCdDeEFHKmoPQrtTuUwxXyYz",
            "--output --dump-header --cookie-jar --trace --trace-ascii --stderr --libcurl "
            "--output-dir --upload-file --config --data --data-binary --data-urlencode "
            "--data-ascii --data-raw --form --json --header --user-agent --user --request "
            "--cookie --referer --max-time --connect-timeout --proxy --cert --key --url "
            "--etag-save --hsts --alt-svc --variable",
        ),
        _curl,
    ),
    "wget": (
        spec(
            "OoaPiBeTtwQUDRAIXlY",
            "--output-document --output-file --append-output --directory-prefix --input-file "
            "--post-file --body-file --load-cookies --save-cookies --execute --warc-file "
            "--user-agent --header --user --password --use-askpass",
        ),
        _wget,
    ),
    "grep": (
        spec(
            "ABCDdefm",
            "--regexp --file --max-count --context --after-context --before-context --include "
            "--exclude --exclude-dir --exclude-from --label --devices --directories "
            "--binary-files --group-separator",
        ),
        _grep,
    ),
    "rg": (
        spec(
            "ABCEefgjmMrtT",
            "--regexp --file --glob --iglob --type --type-not --type-add --max-count --replace "
            "--context --after-context --before-context --pre --pre-glob --encoding --threads "
            "--max-depth --sort --sortr --colors --max-filesize --path-separator",
        ),
        _ripgrep,
    ),
    "diff": (spec("CDFILSUWx", "--label --exclude --exclude-from --ignore-matching-lines"), _diff),
    "aria2c": (
        spec("dojisxk", "--dir --out --input-file --split --max-connection-per-server"),
        _aria2c,
    ),
}
for _alias in ("egrep", "fgrep", "rgrep", "zgrep", "zegrep", "bzgrep", "xzgrep"):
    WRITERS[_alias] = WRITERS["grep"]
for _alias in ("ag", "ack", "ack-grep", "ugrep", "pt", "sift"):
    WRITERS[_alias] = WRITERS["rg"]
for _alias in (
    "gzip",
    "gunzip",
    "bzip2",
    "bunzip2",
    "xz",
    "unxz",
    "lzma",
    "unlzma",
    "zstd",
    "unzstd",
    "lz4",
    "pigz",
    "unpigz",
    "pbzip2",
    "lzip",
    "compress",
    "uncompress",
    "brotli",
):
    WRITERS[_alias] = (spec("SobTM", "--suffix --output --threads --memlimit"), _compressor)
for _alias in ("base32", "basenc"):
    WRITERS[_alias] = WRITERS["base64"]
for _alias in ("bsdtar", "gtar"):
    WRITERS[_alias] = WRITERS["tar"]
for _alias in ("http", "https", "xh", "xhs"):
    WRITERS[_alias] = (spec("oaA", "--output --auth --auth-type --session"), _httpie)


def r_writer(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Use:
    """The rule for every command of :data:`WRITERS`."""
    table, roles = WRITERS[base]
    parsed = parse_options(argv[1:], table)
    return roles(an, base, argv, parsed, stdin)


def r_downloader(an: Analysis, base: str, argv: list[Field], stdin: Input) -> Output:
    """curl, wget: their output is downloaded data (``curl ... | sh`` is checked as such)."""
    use = r_writer(an, base, argv, stdin)
    for target in use.writes:
        check_write(an, target, f"{base} downloads into", argv)
    for target in use.into:
        check_write(an, target, f"{base} downloads into", argv, into=True)
    check_mentions(an, argv[1:], Use(writes=use.writes, into=use.into, precise=True), argv=argv)
    return Output(None, False, True)


RULES: dict[str, Rule] = {name: r_writer for name in WRITERS}
RULES.update(
    {name: r_downloader for name in ("curl", "wget", "aria2c", "http", "https", "xh", "xhs")}
)
