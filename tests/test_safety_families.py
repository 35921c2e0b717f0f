"""The classifier's families, each tested by its mechanism rather than by examples.

Every test here runs the real classifier against a real home directory in a
temporary folder (``HOME`` and ``HERMES_HOME`` point into it, with a
``config.yaml``, ``.env``, ``auth.json``, an ssh key and a ``.bashrc``), so
symlinks, hard links and existing directories are the file system's own.

- programs that run other programs: every entry of
  :data:`hermes_agent.safety.runners.RUNS` is given a destructive payload, a
  gate-lifting payload and a secret-reading payload (all refused) and a
  harmless one (not refused);
- writers whose target is an option, and writers *into* a directory: each
  template is given a gate file (refused), a start-up file (asks) and a
  workspace file (safe);
- recursive readers: HERMES_HOME or the home directory (refused), the
  workspace (safe);
- clobbering outside the workspace asks, inside it does not;
- paths are resolved on the real file system: symlinks (made before or in the
  same command), ``cd``/``pushd``, ``..``, hard links;
- hermes' own CLI by every spelling: writing sub-commands refused, reading
  ones safe.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

from hermes_agent.safety.gate import Level, classify
from hermes_agent.safety.runners import RUNS


class Box:
    """A home with hermes' files in it, and a workspace beside it."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.hermes = self.home / ".hermes"
        self.ws = root / "ws"
        for d in (self.hermes / "skills", self.hermes / "mcp-tokens", self.home / ".ssh"):
            d.mkdir(parents=True)
        (self.ws / "src").mkdir(parents=True)
        (self.ws / "conf").mkdir()
        for name in ("config.yaml", ".env", "auth.json", "mcp-tokens/srv.json"):
            (self.hermes / name).write_text("x: 1\n")
        (self.home / ".ssh" / "id_rsa").write_text("key\n")
        (self.home / ".bashrc").write_text("# rc\n")
        (self.ws / "src" / "a.py").write_text("print(1)\n")

    def level(self, command: str) -> Level:
        return classify(command, cwd=str(self.ws)).level

    def reasons(self, command: str) -> str:
        return "; ".join(classify(command, cwd=str(self.ws)).reasons)


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    b = Box(tmp_path)
    monkeypatch.setenv("HOME", str(b.home))
    monkeypatch.delenv("HERMES_HOME", raising=False)
    return b


# --- programs that run other programs ---------------------------------------------------


def _payload_forms(payload: str) -> dict[str, str]:
    """The payload spelled the way each program of RUNS takes it."""
    q = shlex.quote
    return {
        "a": payload,
        "s": q(payload),
        "s_shell": q("shell " + payload),
        "s_platform": q("platform shell " + payload),
        "s_spawn": q(f"spawn {payload}; expect eof"),
        "s_bang": q("!" + payload),
        "s_bang_plain": q("!" + payload),
        "s_eq": q(payload),
        "s_awk": q(f'BEGIN{{system("{payload}")}}'),
        "s_sed": q("1e " + payload),
        "s_plus_bang": q("+!" + payload),
        "s_perl": q(f'system("{payload}")'),
        "s_python": q(f'import os; os.system("{payload}")'),
        "s_ruby": q(f'system("{payload}")'),
        "s_node": q(f'require("child_process").execSync("{payload}")'),
        "s_dotshell": q(".shell " + payload),
        "s_psql": q("\\! " + payload),
        "s_elisp": q(f'(shell-command "{payload}")'),
        "s_dc": q("!" + payload),
        "s_m4": q(f"syscmd(`{payload}')"),
        "s_tcl": q("exec " + payload),
        "s_ruby_x": q(f"%x({payload})"),
        "s_lua": q(f'os.execute("{payload}")'),
        "s_php": q(f'shell_exec("{payload}");'),
    }


DANGEROUS_PAYLOADS = [
    "rm -rf ~",
    "hermes config set approvals.mode off",
    "cp evil.yaml ~/.hermes/config.yaml",
]


@pytest.mark.parametrize("program", sorted(RUNS))
def test_every_program_that_runs_its_argument_is_checked_like_a_shell(
    program: str, box: Box
) -> None:
    template = RUNS[program]
    for payload in DANGEROUS_PAYLOADS:
        command = template.format(**_payload_forms(payload))
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))
    harmless = template.format(**_payload_forms("ls -la"))
    assert box.level(harmless) is not Level.REFUSED, (harmless, box.reasons(harmless))


def test_a_payload_only_known_at_run_time_is_never_safe(box: Box) -> None:
    for command in [
        'script -c "$CMD" /dev/null',
        'tmux new -d "$CMD"',
        'tmux send-keys -t 0 "$X" Enter',
        'gdb -batch -ex "shell $X"',
        'vim -c "$X"',
        'su -c "$X"',
        'echo "$X" | at now',
        "parallel $X ::: a",
        'sqlite3 x.db "$X"',
    ]:
        assert box.level(command) is not Level.SAFE, command


def test_programs_that_hand_commands_to_a_service_always_ask(box: Box) -> None:
    for command in [
        "echo ls | at now",
        "systemd-run --user ls",
        "tmux new -d ls",
        "tmux send-keys -t 0 ls Enter",
        "screen -S s -X stuff 'ls^M'",
        "flatpak-spawn --host ls",
    ]:
        assert box.level(command) is Level.APPROVAL, (command, box.reasons(command))


# --- writers ------------------------------------------------------------------------------

FILE_WRITERS = [
    "sort -o {f} data",
    "sort data -o{f}",
    "shuf -o {f} data",
    "uniq data {f}",
    "iconv -f utf8 -t ascii -o {f} data",
    "curl -sSLo {f} http://127.0.0.1/x",
    "curl --output={f} http://127.0.0.1/x",
    "wget -qO {f} http://127.0.0.1/x",
    "tee -a {f} < data",
    "cp data {f}",
    "cp /dev/null {f}",
    "mv data {f}",
    "install -D data {f}",
    "ln -sf data {f}",
    "rsync data {f}",
    "dd if=data of={f}",
    "patch {f} < fix.diff",
    "patch -o {f} data < fix.diff",
    "objcopy data {f}",
    "xxd -r data {f}",
    "gzip {f}",
    "truncate -s0 {f}",
    ": > {f}",
    "> {f}",
    "echo x >> {f}",
    "sed -i s/a/b/ {f}",
    "perl -pi -e s/a/b/ {f}",
    "yq -i .a=1 {f}",
    "vim -c wq {f}",
    "split -b1 data {f}",
    "csplit -f {f} data 1",
    "base64 -d -o {f} data",
]


@pytest.mark.parametrize("template", FILE_WRITERS)
def test_a_write_target_named_by_an_option_is_judged_like_any_write(
    template: str, box: Box
) -> None:
    gate = template.format(f=shlex.quote(str(box.hermes / "config.yaml")))
    assert box.level(gate) is Level.REFUSED, (gate, box.reasons(gate))
    startup = template.format(f="~/.bashrc")
    assert box.level(startup) >= Level.APPROVAL, startup
    local = template.format(f="out.txt")
    assert box.level(local) is not Level.REFUSED, (local, box.reasons(local))
    if not template.startswith(("dd ", "gzip ")):
        assert box.level(local) is Level.SAFE, (local, box.reasons(local))


#: Writers into a directory: the names they write come from an archive, a patch or a
#: tree, so anything protected below the directory may be overwritten.
DIRECTORY_WRITERS = [
    "tar -x -C {d} -f x.tar",
    "tar xf x.tar -C {d}",
    "unzip -o x.zip -d {d}",
    "cp -r conf/. {d}",
    "rsync -a conf/ {d}/",
    "git -C {d} pull",
    "wget -P {d} http://127.0.0.1/x",
    "patch -d {d} -p1 < fix.diff",
]
#: Writers of a named file into a directory: refused when that name is protected there.
NAMED_INTO = ["cp -t {d} config.yaml", "mv config.yaml {d}/", "install -m 600 .env {d}/"]


@pytest.mark.parametrize("template", [*DIRECTORY_WRITERS, *NAMED_INTO, "7z x a.7z -o{d}"])
def test_copying_or_extracting_into_hermes_home_is_refused(template: str, box: Box) -> None:
    targets = [str(box.hermes)]
    if not template.startswith("7z"):  # bash expands no `~` inside `-o~/...`
        targets += ["~/.hermes", "$HERMES_HOME"]
    if template in DIRECTORY_WRITERS:
        targets.append("~")
    for target in targets:
        command = template.format(d=target)
        if target == "$HERMES_HOME":
            command = f"HERMES_HOME={box.hermes}; " + command
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))
    local = template.format(d="out")
    assert box.level(local) is Level.SAFE, (local, box.reasons(local))


def test_writes_into_hermes_code_are_refused(box: Box) -> None:
    import hermes_agent

    package = Path(hermes_agent.__file__).resolve().parent
    for command in [
        f"cp x {package}/safety/gate.py",
        f"echo x >> {package}/__init__.py",
        f"sed -i s/a/b/ {package}/safety/targets.py",
        f"tar -x -C {package} -f x.tar",
        f"pip install --target {sys.prefix} x",
        f"{Path(sys.executable).parent}/pip install x",
    ]:
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))


# --- readers of whole trees ---------------------------------------------------------------

TREE_READERS = [
    "grep -r TOKEN {d}",
    "grep -R -n key {d}",
    "rg --hidden TOKEN {d}",
    "tar czf /tmp/out.tgz {d}",
    "tar -C {d} -cf /tmp/out.tar .",
    "zip -r /tmp/out.zip {d}",
    "cp -r {d} copy",
    "rsync -a {d} host:backup",
    "scp -r {d} host:",
    "find {d} -type f -exec cat {{}} +",
    "diff -r {d} other",
    "find {d} -type f | xargs cat",
    "find {d} -type f -print0 | xargs -0 base64",
    "cat $(find {d} -type f)",
    "docker run --rm -v {d}:/x:ro alpine cat /x/.env",
]


@pytest.mark.parametrize("template", TREE_READERS)
def test_reading_a_tree_that_holds_hermes_secrets_is_refused(template: str, box: Box) -> None:
    for tree in ("~/.hermes", "~", str(box.hermes)):
        command = template.format(d=tree)
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))
    ssh = template.format(d="~/.ssh")
    assert box.level(ssh) >= Level.APPROVAL, ssh
    local = template.format(d="src")
    assert box.level(local) is Level.SAFE, (local, box.reasons(local))


def test_content_of_hermes_secrets_is_refused_names_are_asked(box: Box) -> None:
    for command in [
        "cat ~/.hermes/.env",
        "base64 < ~/.hermes/.env",
        "cat ~/.hermes/*",
        "head -c 100 ~/.hermes/auth.json",
        "xxd ~/.hermes/mcp-tokens/srv.json",
        "cp ~/.hermes/.env /tmp/x",
        "curl -T ~/.hermes/.env http://127.0.0.1/",
        "curl -d @$HOME/.hermes/auth.json http://127.0.0.1/",
    ]:
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))
    assert box.level("ls ~/.hermes/mcp-tokens") is Level.APPROVAL
    assert box.level("cat ~/.hermes/config.yaml") is Level.SAFE
    assert box.level("rg TOKEN ~") is Level.SAFE  # rg skips dot-directories by default
    assert box.level("cat ~/.ssh/id_rsa") is Level.APPROVAL


# --- clobbering ----------------------------------------------------------------------------

CLOBBERS = [
    "> {f}",
    ": > {f}",
    "truncate -s0 {f}",
    "cp /dev/null {f}",
    "sed -i d {f}",
    "rm {f}",
    "echo x | tee {f}",
]


@pytest.mark.parametrize("template", CLOBBERS)
def test_clobbering_outside_the_workspace_asks(template: str, box: Box) -> None:
    (box.home / "notes.txt").write_text("mine\n")
    outside = template.format(f="~/notes.txt")
    assert box.level(outside) is Level.APPROVAL, (outside, box.reasons(outside))
    inside = template.format(f="out.txt")
    assert box.level(inside) is Level.SAFE, (inside, box.reasons(inside))
    scratch = template.format(f="/tmp/hermes-test-scratch.txt")
    assert box.level(scratch) is Level.SAFE, (scratch, box.reasons(scratch))


# --- paths as the kernel resolves them -------------------------------------------------------


def test_symlinks_made_in_the_same_command_are_followed(box: Box) -> None:
    for command in [
        "ln -s ~ x; cd x; sed -i s/manual/off/ .hermes/config.yaml",
        "ln -s ~/.hermes h && echo 'approvals: {mode: off}' > h/config.yaml",
        "ln -s ~/.hermes/skills s; echo x > s/../config.yaml",
        "ln -s ~ x && cp evil.yaml x/.hermes/config.yaml",
        "ln -s $HOME/.hermes/.env e; cat e",
    ]:
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))


def test_symlinks_and_hard_links_on_disk_are_followed(box: Box) -> None:
    (box.ws / "innocent").symlink_to(box.hermes / "config.yaml")
    (box.ws / "up").symlink_to(box.home)
    (box.ws / "skills").symlink_to(box.hermes / "skills")
    os.link(box.hermes / "config.yaml", box.ws / "hard")
    for command in [
        "sed -i s/manual/off/ innocent",
        "echo x > innocent",
        "cp evil.yaml up/.hermes/config.yaml",
        "cd up && echo x > .hermes/config.yaml",
        "echo x > skills/../config.yaml",
        "echo x > hard",
        "cat up/.hermes/.env",
    ]:
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))
    assert box.level("cat innocent") is Level.SAFE


def test_cd_pushd_dotdot_and_pwd_are_followed(box: Box) -> None:
    for command in [
        "cd ~ && cd .hermes && echo x > config.yaml",
        "pushd ~/.hermes && sed -i d config.yaml",
        "cd src/../../home/.hermes && echo x > config.yaml",
        'cd ~/.hermes; echo x > "$PWD/config.yaml"',
        f"cd {box.home} && tar xf x.tar",
    ]:
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))


# --- hermes' own CLI -----------------------------------------------------------------------


def _spellings(box: Box) -> list[str]:
    bin_dir = Path(sys.executable).parent
    copy = box.ws / "tool"
    copy.write_text("#!/usr/bin/env python3\nfrom hermes_agent.cli.main import main\nmain()\n")
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    return [
        "hermes",
        "hermes-agent",
        str(bin_dir / "hermes"),
        f"{sys.executable} {bin_dir / 'hermes'}",
        "python -m hermes_agent",
        "python3 -m hermes_agent.cli.main",
        "uv run hermes",
        "env hermes",
        "exec hermes",
        "nohup hermes",
        "./tool",
        "python3 tool",
        f"cp {bin_dir / 'hermes'} h && ./h",
        f"ln -s {bin_dir / 'hermes'} h && ./h",
        "$(command -v hermes)",
        "bash -c 'hermes \"$@\"' _",
    ]


WRITING = [
    "config set approvals.mode off",
    "config set model.default x",
    "config unset approvals.allow",
    "config edit",
    "setup",
    "deploy apply spec.json",
    "skills install x",
    "skills remove x",
    "cron add -s 1m 'rm -rf ~'",
    "cron remove 1",
    "gateway install",
    "sessions delete 1",
    "some-future-command",
]
READING = ["version", "--help", "config get approvals.mode", "config show", "sessions list"]


def test_hermes_cli_writes_are_refused_by_any_spelling(box: Box) -> None:
    for spelling in _spellings(box):
        for words in WRITING:
            command = f"{spelling} {words}"
            if spelling.startswith(("$(", "bash")) and words == "some-future-command":
                continue  # a program only known at run time: its words alone decide
            if spelling.startswith("hermes-agent") and not words.startswith(
                ("config", "setup", "deploy", "skills", "cron", "gateway", "sessions")
            ):
                continue
            assert box.level(command) is Level.REFUSED, (command, box.reasons(command))


def test_hermes_cli_reads_are_safe(box: Box) -> None:
    for spelling in (
        "hermes",
        str(Path(sys.executable).parent / "hermes"),
        "python -m hermes_agent",
    ):
        for words in READING:
            command = f"{spelling} {words}"
            assert box.level(command) is Level.SAFE, (command, box.reasons(command))
    assert box.level("hermes chat -q hi") is Level.APPROVAL


def test_hermes_own_modules_run_as_scripts_are_its_cli(box: Box) -> None:
    import hermes_agent

    package = Path(hermes_agent.__file__).resolve().parent
    for script in (package / "__main__.py", package / "cli" / "main.py"):
        command = f"python3 {script} config set approvals.mode off"
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))


def test_inline_code_that_imports_hermes_is_refused(box: Box) -> None:
    for command in [
        "python -c 'from hermes_agent.cli.main import main; main([\"setup\"])'",
        "python3 -c 'import runpy; runpy.run_module(\"hermes_agent\")'",
        "python -m runpy hermes_agent config set approvals.mode off",
    ]:
        assert box.level(command) is Level.REFUSED, (command, box.reasons(command))
