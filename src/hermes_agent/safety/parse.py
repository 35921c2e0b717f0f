"""The parser adapter and the analysis walk.

tree-sitter-bash parses the command; :class:`Analysis` walks the tree the way
bash would run it: words are evaluated into fields (quotes, expansions,
variables assigned earlier, the known output of ``$(...)``), pipelines carry
their known output to the next stage, redirections are checked as writes and
reads, and every simple command is handed to its rule in
:data:`hermes_agent.safety.commands.RULES`. Findings accumulate on the
analysis; :func:`hermes_agent.safety.gate.classify` turns them into a verdict.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hermes_agent.safety.commands import (
    CODE_DANGER,
    DANGEROUS_ENV,
    DOWNLOADERS,
    NAMES_ONLY,
    PACKAGE_VERBS,
    READ_ONLY,
    command_env,
    r_package,
)
from hermes_agent.safety.commands import RULES as COMMAND_RULES
from hermes_agent.safety.decoders import DECODERS, NOT_DECODING
from hermes_agent.safety.flow import (
    MAX_DEPTH,
    NO_INPUT,
    NO_OUTPUT,
    WRITE_OPS,
    Input,
    Output,
    Use,
)
from hermes_agent.safety.targets import (
    GATE_FILES,
    TEMP_DIRS,
    check_mentions,
    check_read,
    check_write,
    code_mentions,
    index,
    kind_at,
)
from hermes_agent.safety.verdict import Finding, Level
from hermes_agent.safety.words import (
    UNKNOWN,
    Field,
    brace_expand,
    canonical_name,
    decode_ansi_c,
    has_glob,
    norm,
    quote,
    static,
    unescape_dq,
    unescape_unquoted,
)

if TYPE_CHECKING:
    from tree_sitter import Node, Parser

from hermes_agent.safety.hermes_cli import NAMES as HERMES_NAMES
from hermes_agent.safety.hermes_cli import arguments_look_like_hermes, is_hermes_program
from hermes_agent.safety.runners import RULES as RUNNER_RULES
from hermes_agent.safety.runners import tcl_code
from hermes_agent.safety.writers import RULES as WRITER_RULES

#: What each program does: the general table, then the writers whose files are named by
#: options, then the programs that run other programs (the more specific rule wins).
RULES = {**COMMAND_RULES, **WRITER_RULES, **RUNNER_RULES}

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


# --- the analysis --------------------------------------------------------------------------


_LITERAL = re.compile(r"'((?:[^'\\\n]|\\.)*)'|\"((?:[^\"\\\n]|\\.)*)\"")
_LIST_OF_LITERALS = re.compile(
    r"[\[(]\s*((?:(?:'[^'\n]*'|\"[^\"\n]*\")\s*,\s*)+(?:'[^'\n]*'|\"[^\"\n]*\"))\s*,?\s*[\])]"
)
#: Inline code that deletes a whole tree, and code that names the home directory or root.
_CODE_TREE_DELETE = re.compile(
    r"\b(rmtree|remove_tree|rm_rf|rm_r|rmSync|rimraf|removeRecursive|deleteRecursively|"
    r"RemoveAll|remove_dir_all)\b|recursive\s*[:=]\s*(true|True|1)"
)
_CODE_HOME = re.compile(
    r"expanduser\(\s*['\"]~['\"]\s*\)|Path\.home\(\)|Dir\.home|homedir\(\)|\$ENV\{\s*['\"]?HOME|"
    r"environ(\.get\(|\[)\s*['\"]HOME|getenv\(\s*['\"]HOME|ENV\[['\"]HOME|['\"]~/?['\"]|"
    r"['\"]/['\"]|File\.expand_path\(\s*['\"]~"
)
#: Inline code that opens or writes files: its path strings are checked as writes.
_CODE_OPENS = re.compile(r"\b(open|write|File|fs|Path|IO)\b")

#: Physical forms of working directories, with the identity of the directory they were
#: computed for: one stat tells whether the answer still holds.
_REAL_DIRS: dict[str, tuple[tuple[int, int], str]] = {}


def _real_dir(path: str, walk: Callable[[str, list[str], int], str]) -> str:
    try:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return walk("/", path.split("/"), 0)
    cached = _REAL_DIRS.get(path)
    if cached is not None and cached[0] == ident:
        return cached[1]
    real = walk("/", path.split("/"), 0)
    if len(_REAL_DIRS) > 64:
        _REAL_DIRS.clear()
    _REAL_DIRS[path] = (ident, real)
    return real


def _temp_dirs() -> tuple[str, ...]:
    tmp = os.environ.get("TMPDIR", "")
    extra = (norm(tmp),) if tmp.startswith("/") and norm(tmp) != "/" else ()
    return (*TEMP_DIRS, *extra)


class Analysis:
    """One classification: walks the tree, evaluates words, collects findings."""

    def __init__(self, command: str, cwd: str | None) -> None:
        self.command = command
        self.index = index()
        self.findings: dict[tuple[str, str], Finding] = {}
        self.commands: dict[tuple[str, ...], None] = {}
        self.cwd: str | None = norm(cwd) if cwd else None
        #: Where the command starts: writes elsewhere (outside temp dirs) are asked about.
        self.workspace = self.cwd
        #: Symbolic links this command makes (physical path -> target), followed like
        #: those on disk when a later word is resolved.
        self.links: dict[str, str] = {}
        self._lstat: dict[str, str | None] = {}
        self._real_dirs: dict[str, str] = {}
        self._gate_inodes: set[tuple[int, int]] | None = None
        #: Copies of hermes' console scripts made by this command (physical paths).
        self.hermes_copies: set[str] = set()
        self._real_workspace: str | None = None
        self._clear_root: str | None = None
        #: False once a `cd` went somewhere unknown: relative paths could be anywhere.
        self.cwd_known = True
        self.vars: dict[str, str | None] = {}
        self.vars_poisoned = False
        self.aliases: dict[str, str] = {}
        #: Files this command writes, with their content when it is known.
        self.files: dict[str, bytes | None] = {}
        #: Some word was judged as a file written (:func:`check_write`); /dev/null aside.
        self.wrote = False
        self.depth = 0
        self.parsed = True
        self._substitutions: dict[tuple[int, int], Output] = {}
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
            self.visit(root, NO_INPUT)
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
                    self.check_argv(argv, NO_INPUT)
                argv, redirect = [], False
                continue
            if token and set(token) <= set("<>&"):
                redirect = ">" in token
                continue
            if redirect:
                self.redirect_target(">", self._expand_static(token), [])
                redirect = False
                continue
            argv.extend(self._expand_static(token))
        if argv:  # pragma: no cover - the sentinel flushes
            self.check_argv(argv, NO_INPUT)

    def _expand_static(self, token: str) -> list[Field]:
        out = []
        for item in brace_expand(token) if "{" in token else [token]:
            out.append(self.tilde(Field(item, token)))
        return out

    # --- the tree --------------------------------------------------------------------

    def text_of(self, node: Node) -> str:
        return self._source[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")

    def visit(self, node: Node, stdin: Input) -> Output:
        kind = node.type
        if kind == "command":
            return self.simple_command(node, stdin, [])
        if kind == "pipeline":
            return self.pipeline(node.named_children, stdin)
        if kind == "redirected_statement":
            return self.redirected(node, stdin)
        if kind == "function_definition":
            self.function(node)
            return NO_OUTPUT
        if kind == "variable_assignment":
            self.assignment(node)
            return NO_OUTPUT
        if kind == "declaration_command":
            self.declaration(node)
            return NO_OUTPUT
        if kind == "unset_command":
            for child in node.named_children:
                self.vars[self.text_of(child)] = None
            return NO_OUTPUT
        if kind in ("command_substitution", "process_substitution"):
            self.substitution(node)
            return NO_OUTPUT
        if kind == "for_statement":
            var = node.child_by_field_name("variable")
            if var is not None:
                self.vars[self.text_of(var)] = None
        if kind in ("comment", "heredoc_start", "heredoc_end"):
            return NO_OUTPUT
        last = NO_OUTPUT
        for child in node.named_children:
            last = self.visit(
                child, stdin if kind in ("subshell", "compound_statement") else NO_INPUT
            )
        return last if kind in ("subshell", "compound_statement", "program") else NO_OUTPUT

    def pipeline(self, stages: Sequence[Node], stdin: Input) -> Output:
        data = stdin
        out = NO_OUTPUT
        for i, stage in enumerate(stages):
            if i > 0:
                data = Input(
                    True,
                    out.data,
                    out.decoded,
                    out.downloaded or data.downloaded,
                    names=out.names,
                )
            out = self.visit(stage, data)
            out = Output(out.data, out.decoded, out.downloaded or data.downloaded, out.names)
        return out

    def redirected(self, node: Node, stdin: Input) -> Output:
        body = node.child_by_field_name("body")
        redirects: list[Node] = []
        continuation: list[Node] = []
        here: Input | None = None
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
            return NO_OUTPUT
        stdin_here = here or stdin
        if body.type == "command":
            # The grammar drops words it cannot place between a command and its
            # here-document (`make -f - <<EOF` loses the `-`): take them back.
            gap = (
                self._slice(
                    body.end_byte,
                    min(c.start_byte for c in node.named_children if c is not body and c != body),
                )
                if len(node.named_children) > 1
                else ""
            )
            lost = [static(w) for w in gap.split() if w not in ("<", ">", "<<", "<<-")]
            out = self.simple_command(body, stdin_here, redirects, lost)
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
                self.check_argv(extra, NO_INPUT)
        for part in continuation:
            if part.type == "pipeline":
                # `cat <<EOF | sh`: the rest of the pipeline hangs under the here-document.
                first = Input(True, out.data, out.decoded, out.downloaded)
                out2 = NO_OUTPUT
                for i, stage in enumerate(part.named_children):
                    feed = first if i == 0 else Input(True, out2.data, out2.decoded)
                    out2 = self.visit(stage, feed)
                out = out2
            else:
                self.visit(part, NO_INPUT)
        return out

    def heredoc(self, node: Node) -> Input:
        body = next((c for c in node.named_children if c.type == "heredoc_body"), None)
        if body is None:
            return Input(True, b"", source="here-document")
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
        return Input(True, None if dynamic else text.encode(), source="here-document")

    def herestring(self, node: Node) -> Input:
        fields: list[Field] = []
        for child in node.named_children:
            fields.extend(self.fields(child))
        if any(f.dynamic for f in fields):
            return Input(True, None, source="here-string")
        return Input(True, (" ".join(f.text for f in fields) + "\n").encode(), source="here-string")

    def function(self, node: Node) -> None:
        name_node = node.child_by_field_name("name")
        body = node.child_by_field_name("body")
        name = self.text_of(name_node) if name_node is not None else ""
        if body is None:
            return
        self.visit(body, NO_INPUT)
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
        if name in DANGEROUS_ENV:
            self.add(
                Level.APPROVAL,
                f"sets {name}, which makes programs load or run other code",
                f"sets {name}",
            )
        if fields:
            command_env(self, name, Field(joined, joined, dynamic))
        old = self.vars.get(name, "")
        if dynamic or (name in self.vars and old != joined):
            self.vars[name] = None
        else:
            self.vars[name] = joined
        if fields:
            check_mentions(self, fields, Use(read_only=False), assignment=True)

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

    def substitution(self, node: Node) -> Output:
        """Check the commands of ``$(...)``/backticks/``<(...)``; return its static output."""
        key = (node.start_byte, node.end_byte)
        cached = self._substitutions.get(key)
        if cached is not None:
            return cached
        statements = [c for c in node.named_children if c.type != "comment"]
        out = NO_OUTPUT
        for statement in statements:
            out = self.visit(statement, NO_INPUT)
        if len(statements) != 1 or node.type == "process_substitution":
            out = Output(None, out.decoded, out.downloaded)
        self._substitutions[key] = out
        return out

    # --- words ----------------------------------------------------------------------

    def lookup(self, name: str) -> str | None:
        if name in self.vars and not self.vars_poisoned:
            return self.vars[name]
        if name == "HOME":
            return self.index.home
        if name == "HERMES_HOME":
            return self.index.hermes_homes[0]
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
            return [self.tilde(Field(unescape_unquoted(t), raw)) for t in brace_expand(raw)]
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
            fields[0] = self.tilde(fields[0])
        return fields

    def tilde(self, f: Field) -> Field:
        text = f.text
        if not text.startswith("~"):
            return f
        head, sep, rest = text.partition("/")
        if head == "~":
            home = self.index.home
        else:
            home = os.path.expanduser(head)
            if home == head:
                return f
        return Field(home + sep + rest if rest or sep else home, f.raw, f.dynamic)

    def _parts(self, node: Node, out: list[tuple[str, str]], quoted: bool) -> None:
        kind = node.type
        if kind == "word" or kind == "number":
            text = self.text_of(node)
            out.append(("q" if quoted else "lit", text if quoted else unescape_unquoted(text)))
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
                    out.append(("q", unescape_dq(self._slice(pos, child.start_byte))))
                self._parts(child, out, True)
                pos = child.end_byte
            if end > pos:
                out.append(("q", unescape_dq(self._slice(pos, end))))
            elif not inner.named_children and end >= start:
                out.append(("q", ""))
        elif kind == "concatenation":
            for child in node.children:
                self._parts(child, out, quoted)
        elif kind in ("simple_expansion", "expansion"):
            self._expansion(node, out, quoted)
        elif kind in ("command_substitution",):
            sub = self.substitution(node)
            if sub.data is None and sub.names:
                # `cat $(find DIR)`: some files under DIR.
                out.append(("unknown", sub.names[0].rstrip("/") + "/" + UNKNOWN))
            elif sub.data is None:
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
                self.visit(child, NO_INPUT)
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

    def simple_command(
        self,
        node: Node,
        stdin: Input,
        outer_redirects: Sequence[Node],
        lost: Sequence[Field] = (),
    ) -> Output:
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
        argv.extend(lost)
        argv.extend(self.redirect_words(redirect_nodes))
        if not argv:
            self.apply_redirects(redirect_nodes)
            return NO_OUTPUT
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

    def apply_redirects(self, nodes: Sequence[Node], out: Output = NO_OUTPUT) -> list[Field]:
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
                self.visit(node, NO_INPUT)
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
            self.redirect_target(op, fields, [])
            if op in WRITE_OPS and len(fields) == 1 and not fields[0].dynamic:
                path = self.resolve(fields[0].text)
                known = self.files.get(path, b"") if op in (">>", "&>>") else b""
                self.files[path] = None if out.data is None or known is None else known + out.data
            for more in rest:
                extra.extend(self.fields(more))
        return extra

    def redirect_target(self, op: str, fields: Sequence[Field], argv: Sequence[Field]) -> None:
        write = op in WRITE_OPS
        for f in fields:
            if f.text == "-" and op in (">&", "<&"):
                continue
            if write:
                check_write(self, f, "redirects output into", argv)
            else:
                check_read(self, f, argv)

    # --- the rules ------------------------------------------------------------------

    def check_argv(self, argv: list[Field], stdin: Input) -> Output:
        """Classify one simple command given as its words; return its static output."""
        name = argv[0]
        if name.dynamic:
            self.commands[tuple(f.shown for f in argv)] = None
            self.add(
                Level.APPROVAL,
                f"the command name ({name.raw}) is only known when it runs",
                argv=argv,
            )
            check_mentions(self, argv[1:], Use())
            if arguments_look_like_hermes(argv[1:]):
                self.add(
                    Level.REFUSED,
                    f"{' '.join(f.shown for f in argv)}: a program only known when it runs, "
                    "given the words of a hermes command that changes its configuration",
                    "hermes gate",
                    argv,
                    gate=True,
                )
            return NO_OUTPUT
        base = canonical_name(name.text)
        if "/" in name.text and base not in HERMES_NAMES and is_hermes_program(self, name):
            base = "hermes"
        self.commands[tuple(f.shown for f in argv)] = None
        if "/" in name.text and self.files:
            self.written_script(name.text, name, argv, shell=True)
        if base in self.aliases and self.depth < MAX_DEPTH:
            expanded = self.aliases[base] + " " + " ".join(quote(f.text) for f in argv[1:])
            self.nested(expanded, f"alias {base}", same_scope=True)
        args = argv[1:]
        handler = RULES.get(base)
        if handler is None and base in PACKAGE_VERBS:
            handler = r_package
        result = handler(self, base, argv, stdin) if handler is not None else None
        use = (
            result
            if isinstance(result, Use)
            else Use(read_only=base in READ_ONLY, names_only=base in NAMES_ONLY)
        )
        if isinstance(result, Output):
            return result
        for target in use.writes:
            check_write(self, target, f"{base} writes", argv, sweeping=use.sweeping)
        for target in use.into:
            check_write(self, target, f"{base} writes into", argv, into=True)
        for target in use.trees:
            check_read(self, target, argv, tree=True)
        check_mentions(self, args, use, argv=argv)
        if use.lists:
            return Output(
                names=tuple(self.real(f.text) for f in use.lists if not f.dynamic and f.text)
            )
        if base in ("echo", "printf", "cat", "rev", "tac") or base in DECODERS:
            return self.static_output(base, args, stdin)
        if base in DOWNLOADERS:
            return Output(None, False, True)
        return NO_OUTPUT

    def static_output(self, base: str, args: list[Field], stdin: Input) -> Output:
        if any(f.dynamic for f in args):
            return NO_OUTPUT
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
            return Output((body + ("\n" if newline else "")).encode())
        if base == "printf":
            if not texts or texts[0].startswith("-"):
                return NO_OUTPUT
            fmt, values = texts[0], texts[1:]
            if "%" in fmt.replace("%%", ""):
                if re.fullmatch(r"(%[sb](\\n)?)+", fmt) or fmt in ("%s", "%s\\n", "%b"):
                    body = "".join(values)
                else:
                    return NO_OUTPUT
            else:
                body = fmt.replace("%%", "%")
            return Output(decode_ansi_c(body).encode())
        data = stdin.data
        if base == "cat":
            if texts and texts != ["-"]:
                return NO_OUTPUT
            return Output(data, stdin.decoded, stdin.downloaded)
        decoder = DECODERS.get(base)
        if decoder is not None:
            result = decoder(texts, data)
            if result is NOT_DECODING:
                return Output(None, False, stdin.downloaded)
            return Output(result if isinstance(result, bytes) else None, True, stdin.downloaded)
        if data is None:
            return NO_OUTPUT
        if base == "rev":
            lines = data.decode("utf-8", "replace").split("\n")
            return Output("\n".join(line[::-1] for line in lines).encode(), True)
        if base == "tac":
            lines = data.decode("utf-8", "replace").rstrip("\n").split("\n")
            return Output(("\n".join(reversed(lines)) + "\n").encode(), True)
        return NO_OUTPUT  # pragma: no cover

    # path checks ----------------------------------------------------------------------

    def resolve(self, text: str) -> str:
        if text.startswith("/"):
            return norm(text)
        if text.startswith(UNKNOWN):
            return text
        if self.cwd is None:
            return text  # relative to a workspace we do not know: not a protected place
        if not self.cwd_known:
            return UNKNOWN + "/" + text
        return norm(posixpath.join(self.cwd, text))

    @property
    def real_workspace(self) -> str | None:
        """The workspace as the kernel sees it (symlinks followed)."""
        if self._real_workspace is None and self.workspace:
            found = self._real_dirs.get(self.workspace)
            if found is None:
                found = self._real_dirs[self.workspace] = _real_dir(self.workspace, self._walk)
            self._real_workspace = found
        return self._real_workspace

    @property
    def clear_root(self) -> str:
        """``workspace/`` when nothing protected is at, above or below the workspace:
        a path that stays inside it names nothing protected ("" otherwise)."""
        if self._clear_root is None:
            self._clear_root = ""
            real = self.real_workspace
            if real and real != "/":
                idx = self.index
                if real not in idx.below and kind_at(idx, real) is None:
                    self._clear_root = real + "/"
        return self._clear_root

    @property
    def temp_dirs(self) -> tuple[str, ...]:
        return _temp_dirs()

    def plain_here(self, text: str) -> bool:
        """Whether ``text`` is a plain name in a working directory inside a workspace that
        holds nothing protected, and is not a symbolic link: then it names nothing
        protected (the fast answer for most words of most commands)."""
        while text.startswith("./"):
            text = text[2:].lstrip("/")
        if text in (".", ""):
            text = "."
        elif (
            "/" in text
            or text[0] in "~.\x00"
            or self.cwd is None
            or not self.cwd_known
            or has_glob(text)
        ):
            return False
        clear = self.clear_root
        if not clear:
            return False
        cwd = self.cwd
        if cwd is None:
            return False
        base = self._real_dirs.get(cwd)
        if base is None:
            self.real(".")
            base = self._real_dirs.get(cwd)
        if base is None or not (base + "/").startswith(clear):
            return False
        if text == ".":
            return True
        path = base + "/" + text
        if path in self.links:
            return False
        return not self._link_at(path)

    def _link_at(self, path: str) -> str | None:
        """What ``path`` is on disk: None (missing), "" (not a link) or the link's target."""
        if path in self._lstat:
            return self._lstat[path]
        target: str | None = None
        # os.access answers "missing" without raising, which costs more than the call.
        if os.access(path, os.F_OK, follow_symlinks=False):
            try:
                st = os.lstat(path)
                target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            except (OSError, ValueError):
                target = None
        self._lstat[path] = target
        return target

    def real(self, text: str) -> str:
        """The path the kernel reaches for ``text``: symlinks followed, ``..`` taken
        physically, including links made earlier in this same command.

        Lexical resolution (:meth:`resolve`) is what bash's ``cd`` does; a file
        operation follows the links, so ``ln -s ~ x; sed -i ... x/.hermes/config.yaml``
        writes hermes' configuration. Only the components that exist are looked up
        (one ``lstat`` each, cached for the analysis).
        """
        if text.startswith(UNKNOWN) or not text:
            return text
        if text.startswith("/"):
            return self._walk("/", text.split("/"), 0)
        if self.cwd is None or not self.cwd_known:
            return self.resolve(text)
        base = self._real_dirs.get(self.cwd)
        if base is None:
            base = (
                self._walk("/", self.cwd.split("/"), 0)
                if self.links
                else _real_dir(self.cwd, self._walk)
            )
            self._real_dirs[self.cwd] = base
        return self._walk(base, text.split("/"), 0)

    def _walk(self, start: str, parts: list[str], hops: int) -> str:
        cur = start
        for i, part in enumerate(parts):
            if part in ("", "."):
                continue
            if part == "..":
                cur = posixpath.dirname(cur)
                continue
            nxt = ("" if cur == "/" else cur) + "/" + part
            target = self.links.get(nxt)
            if target is None:
                target = self._link_at(nxt)
                if target is None:
                    return norm(posixpath.join(nxt, *parts[i + 1 :]))
            if target and hops < 40:
                cur = self._walk(
                    "/" if target.startswith("/") else cur, target.split("/"), hops + 1
                )
            else:
                cur = nxt
        return cur

    def add_link(self, link: str, target: str) -> None:
        """Remember ``ln -s target link`` made by this command, for later words."""
        if link.startswith(UNKNOWN) or target.startswith(UNKNOWN):
            return
        parent, name = posixpath.split(link.rstrip("/"))
        where = self.real(parent or ".") if parent else self.real(".")
        key = ("" if where == "/" else where) + "/" + name
        self.links[key] = target
        self._lstat.pop(key, None)
        self._real_dirs.clear()

    def gate_inode(self, path: str) -> bool:
        """Whether ``path`` is a hard link to one of hermes' gate or secret files."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return False
        if st.st_nlink < 2 or stat.S_ISDIR(st.st_mode):
            return False
        if self._gate_inodes is None:
            inodes: set[tuple[int, int]] = set()
            for home in self.index.hermes_homes:
                for name in GATE_FILES:
                    try:
                        found = os.stat(posixpath.join(home, name))
                    except OSError:
                        continue
                    inodes.add((found.st_dev, found.st_ino))
            self._gate_inodes = inodes
        return (st.st_dev, st.st_ino) in self._gate_inodes

    def run_code(
        self, base: str, text: str | None, argv: Sequence[Field], what: str = "inline code"
    ) -> None:
        """Inline code given to an interpreter: look for process, delete and decode calls."""
        if text is None:
            self.add(Level.APPROVAL, f"runs {base} {what} built at run time", argv=argv)
            return
        if base in ("tclsh", "wish", "expect"):
            tcl_code(self, base, text, list(argv))
        if _CODE_TREE_DELETE.search(text) and _CODE_HOME.search(text):
            self.add(
                Level.REFUSED,
                f"{base} {what} deletes a whole tree starting at the home directory or /",
                "rm -rf /",
                argv,
            )
        if CODE_DANGER.search(text):
            self.add(
                Level.APPROVAL,
                f"{base} {what} runs programs, deletes files or decodes hidden code",
                f"{base} inline code",
                argv,
            )
            self.code_literals(base, text, argv, what)
        elif _CODE_OPENS.search(text):
            self.code_literals(base, text, argv, what)
        code_mentions(self, text, argv, f"{base} {what}")

    def code_literals(self, base: str, text: str, argv: Sequence[Field], what: str) -> None:
        """The strings in inline code that runs programs or writes files: each is checked
        as a command it may run (``os.system("rm -rf ~")``, a list joined into one:
        ``["rm", "-rf", "/"]``) and, when it looks like a path, as a file it may write."""
        literals = [a or b for a, b in _LITERAL.findall(text)]
        commands = dict.fromkeys(literals)
        for group in _LIST_OF_LITERALS.findall(text):
            words = [a or b for a, b in _LITERAL.findall(group)]
            if len(words) > 1:
                commands[" ".join(quote(w) for w in words)] = None
        for m in re.finditer(r"`([^`]*)`|(?:\bqx|%x)\s*[({\[/|](.*?)[)}\]/|]", text):
            commands[m.group(1) or m.group(2) or ""] = None
        for command in list(commands)[:24]:
            if command.strip():
                self.nested(command, f"a string in the {base} {what}")
        for literal in dict.fromkeys(literals):
            if literal.startswith(("/", "~")) and " " not in literal:
                check_write(
                    self, self.tilde(Field(literal, literal)), f"{base} {what} may write", argv
                )

    def runs_stdin(self, base: str, stdin: Input, argv: Sequence[Field], shell: bool) -> None:
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

    def shell_string(self, base: str, f: Field, argv: Sequence[Field]) -> None:
        if f.dynamic:
            self.add(
                Level.APPROVAL,
                f"{base} runs a command string that is only known when it runs ({f.raw})",
                argv=argv,
            )
            return
        self.nested(f.text, f"the command string given to {base}")
