"""nix/module.nix evaluated with `lib.evalModules` against nixpkgs' lib.

The module is evaluated by tests/nix/eval-module.nix: nixpkgs' `lib` (a
checkout of nix-community/nixpkgs.lib whose path is in $HERMES_NIXPKGS_LIB,
the repository or its `lib` directory), a stub module declaring the NixOS
options the module sets, and fake derivations for `pkgs`. Nothing is built.
The spec it renders is fed to the real `hermes deploy apply`, and the native
unit is rendered to a file and scored by `systemd-analyze security --offline=true`.

Without $HERMES_NIXPKGS_LIB (or $HERMES_NIX_INPUTS, the folder of pinned trees
that scripts/test exports when ../shared/nix-inputs exists) every test here is
reported SKIPPED (nixpkgs' lib is not vendored): that is not a pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "nix" / "eval-module.nix"
HERMES = Path(sys.executable).with_name("hermes")
PKG = "/nix/store/00000000000000000000000000000000-hermes-agent"
MAX_EXPOSURE = 2.0


def nixpkgs_lib() -> Path:
    raw = os.environ.get("HERMES_NIXPKGS_LIB")
    inputs = os.environ.get("HERMES_NIX_INPUTS")
    if not raw and inputs:
        raw = str(Path(inputs) / "nixpkgs.lib")
    if not raw:
        pytest.skip(
            "HERMES_NIXPKGS_LIB is not set: point it at a checkout of "
            "nix-community/nixpkgs.lib to evaluate the NixOS module"
        )
    path = Path(raw)
    if (path / "lib" / "default.nix").is_file():
        path = path / "lib"
    if not (path / "default.nix").is_file():
        pytest.fail(f"HERMES_NIXPKGS_LIB={raw}: no nixpkgs lib (default.nix) there")
    return path


def evaluate(tmp_path: Path, *configs: str) -> dict[str, Any]:
    """Evaluate the module with CONFIGS (Nix expressions, one module each)."""
    lib = nixpkgs_lib()
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.fail(
            "nix-instantiate is not installed: run tests/peers/install.sh as root (nix-bin)"
        )
    files = []
    for i, text in enumerate(configs):
        f = tmp_path / f"config-{i}.nix"
        f.write_text(text)
        files.append(str(f))
    result = subprocess.run(
        [
            nix,
            "--eval",
            "--strict",
            "--json",
            "--readonly-mode",
            str(EVAL),
            "--arg",
            "libPath",
            str(lib),
            "--arg",
            "extraConfigurations",
            "[ " + " ".join(files) + " ]",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def render_unit(service: dict[str, Any]) -> str:
    """The unit file NixOS would write for SERVICE (lists become repeated lines)."""

    def value(v: Any) -> str:
        return "true" if v is True else "false" if v is False else str(v)

    lines = ["[Unit]", f"Description={service['description']}"]
    lines += [f"After={u}" for u in service["after"]] + [f"Wants={u}" for u in service["wants"]]
    lines.append("[Service]")
    env = dict(service["environment"])
    env["PATH"] = ":".join(f"{p}/bin" for p in service["path"])
    lines += [f'Environment="{k}={v}"' for k, v in sorted(env.items())]
    for key, v in sorted(service["serviceConfig"].items()):
        lines += [f"{key}={value(x)}" for x in (v if isinstance(v, list) else [v])]
    lines += ["[Install]"] + [f"WantedBy={u}" for u in service["wantedBy"]]
    return "\n".join(lines) + "\n"


ENABLE = "{ services.hermes-agent.enable = true; }"


def test_native_unit_runs_the_gateway_and_applies_the_spec_first(tmp_path: Path) -> None:
    out = evaluate(tmp_path, ENABLE)
    assert out["failedAssertions"] == []
    sc = out["service"]["serviceConfig"]
    assert sc["ExecStart"] == f"{PKG}/bin/hermes gateway run"
    pre = re.fullmatch(
        rf"{PKG}/bin/hermes deploy apply (/nix/store/[0-9a-f]{{32}}-hermes-deployment\.json) "
        r"--home /var/lib/hermes/\.hermes",
        sc["ExecStartPre"],
    )
    assert pre, sc["ExecStartPre"]
    assert (sc["User"], sc["Group"]) == ("hermes", "hermes")
    assert sc["WorkingDirectory"] == "/var/lib/hermes/workspace"
    assert (sc["Restart"], sc["RestartSec"]) == ("always", "5")
    assert out["service"]["environment"]["HERMES_HOME"] == "/var/lib/hermes/.hermes"
    assert out["service"]["environment"]["HERMES_MANAGED"] == "true"
    assert out["service"]["wantedBy"] == ["multi-user.target"]
    # hardening
    assert sc["ProtectSystem"] == "strict"
    assert sc["ProtectHome"] is True
    assert sc["PrivateTmp"] is True
    assert sc["NoNewPrivileges"] is True
    assert sc["CapabilityBoundingSet"] == ""
    assert sc["RestrictAddressFamilies"] == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert sc["SystemCallFilter"][0] == "@system-service"
    assert sc["ReadWritePaths"] == ["/var/lib/hermes"]
    assert sc["MemoryDenyWriteExecute"] is False  # Node's JIT needs W+X memory
    # the terminal tool's programs are on PATH
    names = {p.split("-", 1)[1] for p in out["service"]["path"]}
    assert {"hermes-agent", "nodejs", "git", "ripgrep", "openssh", "ffmpeg"} <= names
    # no activation script: the spec is applied by ExecStartPre only
    assert out["activation"] is None and out["activationProblems"] == []


def test_users_groups_and_tmpfiles(tmp_path: Path) -> None:
    out = evaluate(tmp_path, ENABLE)
    assert out["users"]["hermes"]["isSystemUser"] is True
    assert out["users"]["hermes"]["group"] == "hermes"
    assert out["users"]["hermes"]["home"] == "/var/lib/hermes"
    assert out["groups"] == ["hermes"]
    dirs = out["tmpfilesSettings"]["10-hermes-agent"]
    assert dirs["/var/lib/hermes"]["d"] == {"mode": "0750", "user": "hermes", "group": "hermes"}
    assert dirs["/var/lib/hermes/.hermes"]["d"]["mode"] == "0700"
    assert dirs["/var/lib/hermes/workspace"]["d"]["mode"] == "0750"
    assert out["tmpfiles"] == []  # the settings form, not the old rules strings
    assert out["systemPackages"] == [] and out["variables"] == {}

    custom = evaluate(
        tmp_path,
        '{ services.hermes-agent = { enable = true; user = "ai"; group = "ai"; '
        'createUser = false; stateDir = "/srv/ai"; }; }',
    )
    assert custom["users"] == {} and custom["groups"] == []
    assert custom["service"]["serviceConfig"]["User"] == "ai"
    assert custom["tmpfilesSettings"]["10-hermes-agent"]["/srv/ai"]["d"]["user"] == "ai"
    assert custom["service"]["environment"]["HERMES_HOME"] == "/srv/ai/.hermes"


def test_disabled_module_defines_nothing(tmp_path: Path) -> None:
    out = evaluate(tmp_path, "{ }")
    assert out["service"] is None and out["activation"] is None
    assert out["users"] == {} and out["tmpfilesSettings"] == {}


def test_settings_are_deep_merged_across_definitions(tmp_path: Path) -> None:
    out = evaluate(
        tmp_path,
        '{ services.hermes-agent = { enable = true; settings = { model.default = "a/b"; '
        'terminal = { timeout = 10; ssh.user = "me"; }; }; }; }',
        '{ services.hermes-agent.settings = { model.provider = "custom"; '
        'terminal.ssh.host = "build.lan"; toolsets = [ "web" ]; }; }',
    )
    assert out["spec"]["settings"] == {
        "model": {"default": "a/b", "provider": "custom"},
        "terminal": {"timeout": 10, "ssh": {"user": "me", "host": "build.lan"}},
        "toolsets": ["web"],
    }


def test_properties_inside_settings_are_resolved(tmp_path: Path) -> None:
    out = evaluate(
        tmp_path,
        "{ lib, ... }: { services.hermes-agent = { enable = true; settings = { "
        'model.default = lib.mkDefault "a/b"; model.provider = lib.mkIf false "custom"; '
        "terminal = lib.mkIf true { timeout = 5; }; }; }; }",
        '{ services.hermes-agent.settings.model.default = "c/d"; }',
    )
    assert out["spec"]["settings"] == {"model": {"default": "c/d"}, "terminal": {"timeout": 5}}


def test_rendered_spec_is_accepted_by_hermes_deploy_apply(tmp_path: Path) -> None:
    state = tmp_path / "state"
    secrets = tmp_path / "secrets.env"
    secrets.write_text("OPENROUTER_API_KEY=sk-test\n")
    out = evaluate(
        tmp_path,
        f"""{{ services.hermes-agent = {{
          enable = true;
          stateDir = "{state}";
          settings.model.default = "a/b";
          environment.LOG_LEVEL = "info";
          environmentFiles = [ "{secrets}" ];
          documents."SOUL.md" = "You are terse.\\n";
          mcpServers.fs = {{ command = "npx"; args = [ "-y" "server-fs" ];
            tools.include = [ "read" ]; }};
          extraArgs = [ "--verbose" "a b" ];
        }}; }}""",
    )
    spec = out["spec"]
    assert spec["version"] == 1
    assert spec["stateDir"] == str(state) and spec["workingDirectory"] == f"{state}/workspace"
    assert spec["environmentFiles"] == [str(secrets)]  # a string: never copied into the store
    assert spec["container"]["enable"] is False and spec["container"]["entrypoint"] == ""
    assert out["service"]["serviceConfig"]["ExecStart"].endswith("gateway run --verbose 'a b'")

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    result = subprocess.run(
        [str(HERMES), "deploy", "apply", str(spec_file), "--home", f"{state}/.hermes", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    import yaml

    config = yaml.safe_load((state / ".hermes" / "config.yaml").read_text())
    assert config["model"] == {"default": "a/b"}
    assert config["mcp_servers"]["fs"] == {
        "command": "npx",
        "args": ["-y", "server-fs"],
        "enabled": True,
        "tools": {"include": ["read"]},
    }
    assert (state / "workspace" / "SOUL.md").read_text() == "You are terse.\n"
    env_file = state / ".hermes" / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert "OPENROUTER_API_KEY=" in env_file.read_text() and "LOG_LEVEL=" in env_file.read_text()


def test_document_paths_become_store_sources(tmp_path: Path) -> None:
    doc = tmp_path / "USER.md"
    doc.write_text("me\n")
    out = evaluate(
        tmp_path,
        f'{{ services.hermes-agent = {{ enable = true; documents = {{ "USER.md" = {doc}; '
        '"SOUL.md" = "text"; }; }; }',
    )
    docs = out["spec"]["documents"]
    assert docs["SOUL.md"] == "text"
    assert re.fullmatch(r"/nix/store/[0-9a-z]{32}-USER\.md", docs["USER.md"]["source"])


def test_add_to_system_packages_puts_the_cli_on_path_and_keeps_state_private(
    tmp_path: Path,
) -> None:
    """The option's promise: the CLI on PATH, the service's state the service user's.

    It used to set HERMES_HOME system-wide and promise that group members share
    sessions with the service, which 0700/0600 modes and UMask=0077 never
    allowed (and SQLite's WAL needs write access even to read). Now nobody's
    CLI is pointed at a home it cannot read, and the applied state keeps its
    private modes: checked through `hermes deploy apply` on the evaluated spec.
    """
    state = tmp_path / "state"
    out = evaluate(
        tmp_path,
        f"{{ services.hermes-agent = {{ enable = true; addToSystemPackages = true; "
        f'stateDir = "{state}"; settings.model.default = "a/b"; }}; }}',
    )
    assert out["systemPackages"] == [PKG]
    assert out["variables"] == {}  # no system-wide HERMES_HOME
    assert out["service"]["serviceConfig"]["UMask"] == "0077"
    (tmp_path / "spec.json").write_text(json.dumps(out["spec"]))
    apply_spec(tmp_path / "spec.json", state / ".hermes")
    home = state / ".hermes"
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / ".env").stat().st_mode & 0o777 == 0o600
    assert (home / "config.yaml").stat().st_mode & 0o777 == 0o600
    docs = (ROOT / "docs" / "nixos.md").read_text()
    assert "sudo -u hermes -H hermes" in docs
    assert 'extraGroups = [ "hermes" ]' not in docs  # the old advice that did not work


def test_state_dir_under_home_is_refused(tmp_path: Path) -> None:
    out = evaluate(
        tmp_path, '{ services.hermes-agent = { enable = true; stateDir = "/home/hermes"; }; }'
    )
    assert any("ProtectHome" in m for m in out["failedAssertions"])


def apply_spec(spec_file: Path, home: Path) -> dict[str, Any]:
    """Run the real `hermes deploy apply` on SPEC_FILE; return its JSON report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    result = subprocess.run(
        [str(HERMES), "deploy", "apply", str(spec_file), "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def identity(tmp_path: Path, spec: dict[str, Any]) -> str:
    f = tmp_path / "identity-spec.json"
    f.write_text(json.dumps(spec))
    result = subprocess.run(
        [str(HERMES), "deploy", "identity", str(f)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_container_mode(tmp_path: Path) -> None:
    base = "services.hermes-agent = { enable = true; container.enable = true;"
    out = evaluate(tmp_path, f"{{ {base} }}; }}")
    assert out["failedAssertions"] == []
    assert out["docker"] is True and out["podman"] is False
    sc = out["service"]["serviceConfig"]
    assert "User" not in sc  # root drives the container; the agent inside is unprivileged
    assert sc["ExecStart"].endswith("/bin/docker start --attach hermes-agent")
    assert re.fullmatch(r"/nix/store/[0-9a-f]{32}-hermes-agent-container-start", sc["ExecStartPre"])
    assert "docker.service" in out["service"]["after"]
    assert out["tmpfilesSettings"]["10-hermes-agent"]["/var/lib/hermes/home"]["d"]["mode"] == "0750"
    # managed mode in the unit itself too, not only inside the container
    assert out["service"]["environment"]["HERMES_MANAGED"] == "true"
    assert out["service"]["environment"]["HERMES_HOME"] == "/var/lib/hermes/.hermes"
    container = out["spec"]["container"]
    assert container["enable"] is True and container["image"] == "ubuntu:24.04"
    assert "exec /data/current-package/bin/hermes gateway run --replace" in container["entrypoint"]
    assert "cd /data/workspace" in container["entrypoint"]

    podman = evaluate(tmp_path, f'{{ {base} container.backend = "podman"; }}; }}')
    assert podman["podman"] is True and podman["docker"] is False
    assert podman["service"]["serviceConfig"]["ExecStart"].endswith(
        "/bin/podman start --attach hermes-agent"
    )

    # what recreates the container: the image; what does not: settings, environment, package
    same = evaluate(
        tmp_path,
        f'{{ {base} settings.model.default = "x/y"; environment.A = "1"; }}; }}',
        '{ services.hermes-agent.package = { type = "derivation"; name = "other"; '
        'outPath = "/nix/store/11111111111111111111111111111111-other"; }; }',
    )
    image = evaluate(tmp_path, f'{{ {base} container.image = "debian:12"; }}; }}')
    assert identity(tmp_path, same["spec"]) == identity(tmp_path, out["spec"])
    assert identity(tmp_path, image["spec"]) != identity(tmp_path, out["spec"])
    assert image["service"]["serviceConfig"]["ExecStartPre"] != sc["ExecStartPre"]


def test_docs_list_every_option(tmp_path: Path) -> None:
    out = evaluate(tmp_path, "{ }")
    docs = (ROOT / "docs" / "nixos.md").read_text()
    assert len(out["options"]) > 30
    missing = [o for o in out["options"] if f"`{o}`" not in docs]
    assert missing == [], f"docs/nixos.md does not describe {missing}"


def test_options_reference_is_generated_from_the_module() -> None:
    lib = nixpkgs_lib()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_nix_options_docs.py"), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "HERMES_NIXPKGS_LIB": str(lib)},
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_native_unit_security_exposure(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(
            "systemd-analyze is not installed: run tests/peers/install.sh as root (systemd)"
        )
    out = evaluate(tmp_path, ENABLE)
    unit = tmp_path / "hermes-agent.service"
    unit.write_text(render_unit(out["service"]))
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    text = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for hermes-agent\.service: (\d+\.\d+)", text)
    assert found, text
    print(f"systemd-analyze security: {found.group(1)}")
    assert float(found.group(1)) <= MAX_EXPOSURE, text


def _syscalls(analyze: str, entry: str) -> set[str]:
    """The system calls a SystemCallFilter entry names (a group expanded by systemd)."""
    if not entry.startswith("@"):
        return {entry}
    result = subprocess.run(
        [analyze, "syscall-filter", "--no-pager", entry], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    names: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        names |= _syscalls(analyze, word)
    return names


def test_native_unit_lets_the_sandbox_use_landlock(tmp_path: Path) -> None:
    """The unit's system call filter, applied in order as systemd does, allows Landlock.

    Without it the agent's commands could not be confined inside the hardened
    unit (landlock_create_ruleset would fail with EPERM and hermes would fall
    back to asking for every command).
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(
            "systemd-analyze is not installed: run tests/peers/install.sh as root (systemd)"
        )
    out = evaluate(tmp_path, ENABLE)
    entries = out["service"]["serviceConfig"]["SystemCallFilter"]
    allowed: set[str] = set()
    for entry in entries:  # The first entry is an allow-list; later ones add or remove.
        if entry.startswith("~"):
            allowed -= _syscalls(analyze, entry[1:])
        else:
            allowed |= _syscalls(analyze, entry)
    assert {"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"} <= allowed
    assert "prctl" in allowed  # PR_SET_NO_NEW_PRIVS before landlock_restrict_self
    assert "reboot" not in allowed  # ~@privileged still holds


# --- fixes of issue 17: each test fails on the module as it was -----------------------


def test_container_unit_sets_managed_mode(tmp_path: Path) -> None:
    out = evaluate(
        tmp_path, "{ services.hermes-agent = { enable = true; container.enable = true; }; }"
    )
    env = out["service"]["environment"]
    assert env["HERMES_MANAGED"] == "true" and env["HERMES_HOME"] == "/var/lib/hermes/.hermes"


def test_package_defaults_to_the_flakes_own_package_without_pkgs_hermes_agent(
    tmp_path: Path,
) -> None:
    """The stub's `pkgs` has no `hermes-agent` (nixpkgs has none either): the default
    comes from the packages flake.nix hands to nix/module.nix."""
    out = evaluate(tmp_path, ENABLE)
    assert out["service"]["serviceConfig"]["ExecStart"].startswith(f"{PKG}/bin/hermes ")
    other = evaluate(
        tmp_path,
        ENABLE,
        '{ services.hermes-agent.package = { type = "derivation"; name = "mine"; '
        'outPath = "/nix/store/22222222222222222222222222222222-mine"; }; }',
    )
    assert other["service"]["serviceConfig"]["ExecStart"].startswith(
        "/nix/store/22222222222222222222222222222222-mine/bin/hermes "
    )
    flake = (ROOT / "flake.nix").read_text()
    assert "import ./nix/module.nix { packages = self.packages; }" in flake


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ('{ command = "npx"; url = "https://mcp.example/"; }', "not both"),
        ("{ args = [ ]; }", "not neither"),
    ],
)
def test_mcp_server_needs_exactly_one_of_command_and_url(
    tmp_path: Path, server: str, problem: str
) -> None:
    out = evaluate(tmp_path, ENABLE, f"{{ services.hermes-agent.mcpServers.bad = {server}; }}")
    assert any("mcpServers.bad" in m and problem in m for m in out["failedAssertions"]), out[
        "failedAssertions"
    ]
    good = evaluate(tmp_path, ENABLE, '{ services.hermes-agent.mcpServers.ok.url = "https://x/"; }')
    assert good["failedAssertions"] == []


def test_mcp_server_names_follow_the_clients_rule(tmp_path: Path) -> None:
    """The names hermes_agent.mcp.config accepts, checked at evaluation, not at service start."""
    from hermes_agent.mcp.config import parse_server

    names = ["gh", "docs-example", "a_b", "docs.example.com", "a__b", "-x", "x" * 41]
    servers = " ".join(f'"{n}".url = "https://x/";' for n in names)
    out = evaluate(tmp_path, ENABLE, f"{{ services.hermes-agent.mcpServers = {{ {servers} }}; }}")
    refused = {
        n
        for n in names
        if any(f"mcpServers.{n}: a server name" in m for m in out["failedAssertions"])
    }
    accepted_by_client = {n for n in names if parse_server(n, {"url": "https://x/"})[0] is not None}
    assert refused == set(names) - accepted_by_client
    assert refused == {"docs.example.com", "a__b", "-x", "x" * 41}


def test_literal_credential_in_an_mcp_header_is_warned_about(tmp_path: Path) -> None:
    out = evaluate(
        tmp_path,
        ENABLE,
        """{ services.hermes-agent.mcpServers = {
             literal = { url = "https://a/"; headers.Authorization = "Bearer ghp_live"; };
             apikey = { url = "https://b/"; headers.X-Api-Key = "k"; };
             fromenv = { url = "https://c/"; headers.Authorization = "Bearer \\${GITHUB_TOKEN}"; };
             plain = { url = "https://d/"; headers.Accept = "application/json"; };
           }; }""",
    )
    warned = " ".join(out["warnings"])
    assert "mcpServers.literal.headers.Authorization" in warned
    assert "mcpServers.apikey.headers.X-Api-Key" in warned
    assert "fromenv" not in warned and "plain" not in warned
    # the ${VAR} reference is rendered as it is, for the service to fill in at start
    assert out["spec"]["mcpServers"]["fromenv"]["headers"] == {
        "Authorization": "Bearer ${GITHUB_TOKEN}"
    }


def test_mcp_header_reference_survives_deploy_apply_into_config_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `${VAR}` goes into config.yaml untouched; its value stays in .env (0600),
    where the MCP client's resolver (hermes_agent.mcp.config) finds it when it connects."""
    import yaml

    state = tmp_path / "state"
    secrets = tmp_path / "secrets.env"
    secrets.write_text("GITHUB_TOKEN=ghp_secret_value\n")
    out = evaluate(
        tmp_path,
        f"""{{ services.hermes-agent = {{ enable = true; stateDir = "{state}";
             environmentFiles = [ "{secrets}" ];
             mcpServers.gh = {{ url = "https://mcp.example/";
               headers.Authorization = "Bearer \\${{GITHUB_TOKEN}}"; }}; }}; }}""",
    )
    assert out["warnings"] == []
    (tmp_path / "spec.json").write_text(json.dumps(out["spec"]))
    apply_spec(tmp_path / "spec.json", state / ".hermes")
    config_text = (state / ".hermes" / "config.yaml").read_text()
    assert "ghp_secret_value" not in config_text
    config = yaml.safe_load(config_text)
    assert config["mcp_servers"]["gh"]["headers"] == {"Authorization": "Bearer ${GITHUB_TOKEN}"}
    assert "GITHUB_TOKEN=" in (state / ".hermes" / ".env").read_text()
    # what the MCP client does when it connects: the same resolver as config.yaml's ${VAR}
    from hermes_agent.mcp import config as mcp_config

    monkeypatch.setenv("HERMES_HOME", str(state / ".hermes"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    [server] = mcp_config.parse_servers(config["mcp_servers"])
    resolved = mcp_config.resolve_map(server.headers, "gh", "headers", mcp_config.variables())
    assert resolved == {"Authorization": "Bearer ghp_secret_value"}


@pytest.mark.parametrize(
    "users", ["{ }", "{ systemd.sysusers.enable = true; }", "{ services.userborn.enable = true; }"]
)
def test_works_with_sysusers_and_userborn_without_activation_scripts(
    tmp_path: Path, users: str
) -> None:
    """With systemd.sysusers or userborn, `hermes` does not exist when activation
    scripts run and the `users` script is gone: the module must use neither."""
    out = evaluate(tmp_path, ENABLE, users)
    assert out["failedAssertions"] == []
    assert out["activationProblems"] == []
    assert "hermes-agent" not in out["activationScripts"]
    assert set(out["tmpfilesSettings"]["10-hermes-agent"]) == {
        "/var/lib/hermes",
        "/var/lib/hermes/.hermes",
        "/var/lib/hermes/workspace",
    }
    assert out["users"]["hermes"]["isSystemUser"] is True
    assert "deploy apply" in out["service"]["serviceConfig"]["ExecStartPre"]


def test_start_is_ordered_after_a_secrets_unit(tmp_path: Path) -> None:
    plain = evaluate(tmp_path, ENABLE)
    assert plain["service"]["after"] == ["network-online.target"]
    with_sops = evaluate(
        tmp_path,
        ENABLE,
        '{ systemd.services.sops-install-secrets.description = "sops-nix (systemd activation)"; }',
    )
    assert "sops-install-secrets.service" in with_sops["service"]["after"]
    assert "sops-install-secrets.service" in with_sops["service"]["requires"]
    container = evaluate(
        tmp_path,
        "{ services.hermes-agent = { enable = true; container.enable = true; }; }",
        '{ systemd.services.agenix-install-secrets.description = "agenix"; }',
    )
    assert {"docker.service", "agenix-install-secrets.service"} <= set(
        container["service"]["after"]
    )
    disabled = evaluate(
        tmp_path, ENABLE, "{ systemd.services.sops-install-secrets.enable = false; }"
    )
    assert disabled["service"]["requires"] == []  # never Requires= a unit that is not written


def test_managed_marker_agrees_with_the_cli(tmp_path: Path) -> None:
    """What the module's spec makes `hermes deploy apply` write, the CLI reads as NixOS."""
    state = tmp_path / "state"
    out = evaluate(
        tmp_path, f'{{ services.hermes-agent = {{ enable = true; stateDir = "{state}"; }}; }}'
    )
    assert "manager" not in out["spec"]  # the default, nixos: older packages accept the spec
    (tmp_path / "spec.json").write_text(json.dumps(out["spec"]))
    apply_spec(tmp_path / "spec.json", state / ".hermes")
    assert (state / ".hermes" / ".managed").read_text() == "nixos\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    env["HERMES_HOME"] = str(state / ".hermes")
    refused = subprocess.run(
        [str(HERMES), "config", "set", "model.default", "x/y"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode == 3
    assert "managed by NixOS" in refused.stderr and "nixos-rebuild switch" in refused.stderr
