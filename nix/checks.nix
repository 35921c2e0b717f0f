# The flake's checks (`nix flake check`). The guide's seven (package-contents,
# entry-points-sync, cli-commands, managed-guard, bundled-skills,
# config-drift, config-roundtrip) are small derivations that run the built
# package; the logic of the non-trivial ones is a Python script under
# nix/checks/ that tests/test_nix_checks.py also runs (and shows failing)
# without Nix. Two more: `module-eval` evaluates the NixOS and home-manager
# modules and the uv2nix workspace at evaluation time (the harnesses of
# tests/nix/, which CI also runs), and `vm` boots the service in a NixOS VM
# (Linux with KVM).
{ pkgs, lib, package, venv, src, nixosModule, nixpkgsLib, inputs }:

let
  hermes = "${package}/bin/hermes";
  python = "${venv}/bin/python";
  check = name: script: pkgs.runCommand "hermes-check-${name}" { } ''
    set -euo pipefail
    export HOME=$TMPDIR/home HERMES_HOME=$TMPDIR/hermes-home
    mkdir -p $HOME
    ${script}
    touch $out
  '';

  evalModule = configuration: import ../tests/nix/eval-module.nix {
    libPath = nixpkgsLib;
    inherit configuration;
  };
  evalHome = system: import ../tests/nix/eval-hm-module.nix {
    libPath = nixpkgsLib;
    inherit system;
    configuration.services.hermes-agent.enable = true;
  };
  uvLock = import ../tests/nix/eval-uv-lock.nix {
    libPath = nixpkgsLib;
    pyprojectNix = inputs.pyproject-nix;
    uv2nix = inputs.uv2nix;
    workspaceRoot = src;
  };
  native = evalModule {
    services.hermes-agent = {
      enable = true;
      settings.model.default = "a/b";
    };
  };
  container = evalModule {
    services.hermes-agent = {
      enable = true;
      container.enable = true;
    };
  };
in
{
  package-contents = check "package-contents" ''
    test -x ${package}/bin/hermes
    test -x ${package}/bin/hermes-agent
    ${hermes} version
  '';

  # pyproject.toml's [project.scripts], read by the script, against the built bin/
  # (whose wrappers package.nix makes from the built wheel's entry points).
  entry-points-sync = check "entry-points-sync" ''
    ${python} ${src}/nix/checks/entry_points_sync.py ${src}/pyproject.toml ${package}/bin
  '';

  # Command names, through argparse's exit status: not the layout of --help.
  cli-commands = check "cli-commands" ''
    ${python} ${src}/nix/checks/cli_commands.py ${hermes}
  '';

  managed-guard = check "managed-guard" ''
    set +e
    HERMES_MANAGED=true ${hermes} config set model.default x/y > out.txt 2>&1
    status=$?
    set -e
    cat out.txt
    test "$status" -eq 3
    grep -q NixOS out.txt
  '';

  bundled-skills = check "bundled-skills" ''
    test -n "$(find ${package}/share/hermes-agent/skills -name SKILL.md)"
    grep -q "HERMES_BUNDLED_SKILLS.*${package}/share/hermes-agent/skills" ${package}/bin/hermes
  '';

  config-drift = check "config-drift" ''
    cp -r ${src}/scripts ${src}/nix .
    chmod -R u+w .
    ${python} scripts/gen_config_keys.py --check
  '';

  config-roundtrip = check "config-roundtrip" ''
    ${python} ${src}/nix/checks/config_roundtrip.py ${hermes}
  '';

  module-eval =
    assert native.failedAssertions == [ ];
    assert native.activationProblems == [ ];
    assert native.service.serviceConfig.User == "hermes";
    assert native.service.environment.HERMES_MANAGED == "true";
    assert native.spec.settings.model.default == "a/b";
    assert container.docker;
    assert container.failedAssertions == [ ];
    assert container.service.environment.HERMES_MANAGED == "true";
    assert (evalHome "x86_64-linux").systemd.Service.ExecStart != "";
    assert (evalHome "aarch64-darwin").launchd.enable;
    assert uvLock.problems == [ ];
    pkgs.writeText "hermes-check-module-eval" (builtins.toJSON {
      inherit (native.service.serviceConfig) ExecStart ExecStartPre;
      container = container.service.serviceConfig.ExecStart;
    });
}
// lib.optionalAttrs pkgs.stdenv.isLinux {
  vm = pkgs.testers.runNixOSTest (import ./tests/vm.nix { inherit nixosModule package; });
}
