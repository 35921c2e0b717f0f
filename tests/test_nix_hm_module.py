"""nix/hm-module.nix (homeManagerModules.default) evaluated with nixpkgs' lib.

tests/nix/eval-hm-module.nix evaluates the module against stub declarations
of what home-manager provides, for Linux (a systemd user service) and macOS
(a launchd agent). The rendered spec goes through the real `hermes deploy
apply`, and the CLI then refuses changes naming home-manager. Without
$HERMES_NIXPKGS_LIB / $HERMES_NIX_INPUTS every test here is SKIPPED, not passed.
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

from test_nix_module import nixpkgs_lib

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "nix" / "eval-hm-module.nix"
HERMES = Path(sys.executable).with_name("hermes")
PKG = "/nix/store/00000000000000000000000000000000-hermes-agent"
ENABLE = "{ services.hermes-agent.enable = true; }"


def evaluate(tmp_path: Path, *configs: str, system: str = "x86_64-linux") -> dict[str, Any]:
    lib = nixpkgs_lib()
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.fail("nix-instantiate is not installed: run tests/peers/install.sh as root")
    files = []
    for i, text in enumerate(configs):
        f = tmp_path / f"hm-config-{i}.nix"
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
            "--argstr",
            "system",
            system,
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


def test_linux_runs_the_gateway_as_a_systemd_user_service(tmp_path: Path) -> None:
    out = evaluate(tmp_path, ENABLE)
    assert out["failedAssertions"] == [] and out["launchd"] is None
    unit = out["systemd"]
    service = unit["Service"]
    assert service["ExecStart"] == f"{PKG}/bin/hermes gateway run"
    assert re.fullmatch(
        rf"{PKG}/bin/hermes deploy apply /nix/store/[0-9a-f]{{32}}-hermes-deployment\.json "
        r"--home /home/alice/\.hermes",
        service["ExecStartPre"],
    )
    assert "HERMES_MANAGED=home-manager" in service["Environment"]
    assert "HERMES_HOME=/home/alice/.hermes" in service["Environment"]
    assert service["Restart"] == "always" and service["UMask"] == "0077"
    assert unit["Install"]["WantedBy"] == ["default.target"]
    assert out["packages"] == [PKG]  # the flake's own package, on home.packages
    assert out["sessionVariables"] == {"HERMES_HOME": "/home/alice/.hermes"}


def test_macos_runs_the_gateway_as_a_launchd_agent(tmp_path: Path) -> None:
    out = evaluate(tmp_path, ENABLE, system="aarch64-darwin")
    assert out["systemd"] is None
    agent = out["launchd"]
    assert agent["enable"] is True
    cfg = agent["config"]
    assert cfg["RunAtLoad"] is True and cfg["KeepAlive"] is True
    assert cfg["EnvironmentVariables"] == {
        "HERMES_HOME": "/home/alice/.hermes",
        "HERMES_MANAGED": "home-manager",
    }
    [script] = out["launchdScripts"]
    apply_at = script.index(f"{PKG}/bin/hermes deploy apply ")
    assert script.index(f"exec {PKG}/bin/hermes gateway run") > apply_at


def test_shares_the_nixos_modules_declarations(tmp_path: Path) -> None:
    """One options file: the shared options are declared identically in both modules."""
    from test_nix_module import evaluate as evaluate_nixos

    hm = {o["name"]: o for o in evaluate(tmp_path, "{ }")["optionDocs"]}
    nixos = {o["name"]: o for o in evaluate_nixos(tmp_path, "{ }")["optionDocs"]}
    shared = [
        n
        for n in hm
        if n.split(".")[2]
        in {"settings", "environment", "environmentFiles", "documents", "mcpServers"}
    ]
    assert len(shared) > 15
    for name in shared:
        assert hm[name] == nixos[name], name
    for module in ("nix/module.nix", "nix/hm-module.nix"):
        assert "import ./common.nix" in (ROOT / module).read_text()


def test_checks_and_warnings_are_the_same_as_on_nixos(tmp_path: Path) -> None:
    out = evaluate(
        tmp_path,
        ENABLE,
        '{ services.hermes-agent.mcpServers = { both = { command = "x"; url = "https://x/"; }; '
        'lit = { url = "https://y/"; headers.Authorization = "Bearer abc"; }; }; }',
    )
    assert any("mcpServers.both" in m for m in out["failedAssertions"])
    assert any("mcpServers.lit.headers.Authorization" in w for w in out["warnings"])


def test_spec_applies_and_the_cli_names_home_manager(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = evaluate(
        tmp_path,
        f'{{ services.hermes-agent = {{ enable = true; home = "{home}"; '
        'settings.model.default = "a/b"; documents."SOUL.md" = "hi\\n"; }; }',
    )
    spec = out["spec"]
    assert spec["manager"] == "home-manager" and spec["workingDirectory"] == f"{home}/workspace"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    applied = subprocess.run(
        [str(HERMES), "deploy", "apply", str(tmp_path / "spec.json"), "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert (home / ".managed").read_text() == "home-manager\n"
    assert (home / "workspace" / "SOUL.md").read_text() == "hi\n"
    refused = subprocess.run(
        [str(HERMES), "config", "set", "model.default", "x/y"],
        capture_output=True,
        text=True,
        env={**env, "HERMES_HOME": str(home)},
        check=False,
    )
    assert refused.returncode == 3
    assert "home-manager switch" in refused.stderr and "NixOS" not in refused.stderr


def test_docs_describe_the_home_manager_options(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "nixos.md").read_text()
    section = docs.split("## home-manager", 1)[1].split("\n## ", 1)[0]
    options = evaluate(tmp_path, "{ }")["options"]
    top = {name.split(".")[2] for name in options}
    missing = [o for o in sorted(top) if f"`{o}`" not in section]
    assert missing == [], f"the home-manager section of docs/nixos.md does not name {missing}"


def test_user_service_starts_after_the_secrets_units(tmp_path: Path) -> None:
    plain = evaluate(tmp_path, ENABLE)
    assert plain["systemd"]["Unit"]["After"] == ["network-online.target"]
    with_secrets = evaluate(
        tmp_path,
        ENABLE,
        '{ systemd.user.services.sops-nix.Unit.Description = "sops-nix"; '
        'systemd.user.services.agenix.Unit.Description = "agenix"; }',
    )
    unit = with_secrets["systemd"]["Unit"]
    assert {"sops-nix.service", "agenix.service"} <= set(unit["After"]) & set(unit["Wants"])
