# The flake's checks (`nix flake check`). Each is a small derivation that runs
# the built package; `module-eval` evaluates nix/module.nix with lib.evalModules
# at evaluation time; `vm` boots the service in a NixOS VM (Linux with KVM).
{ pkgs, lib, package, venv, src, nixosModule, nixpkgsLib }:

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

  entry-points-sync = check "entry-points-sync" ''
    ${lib.concatMapStringsSep "\n" (name: ''
      test -x ${package}/bin/${name} || { echo "[project.scripts] entry ${name} has no wrapped binary" >&2; exit 1; }
    '') package.passthru.scripts}
    # and no wrapped binary without an entry
    for bin in ${package}/bin/*; do
      case " ${toString package.passthru.scripts} " in
        *" $(basename $bin) "*) ;;
        *) echo "$(basename $bin) is not a [project.scripts] entry" >&2; exit 1 ;;
      esac
    done
  '';

  cli-commands = check "cli-commands" ''
    ${hermes} --help > help.txt
    grep -q '^    gateway ' help.txt || { echo "hermes --help lacks gateway" >&2; exit 1; }
    grep -q '^    config ' help.txt || { echo "hermes --help lacks config" >&2; exit 1; }
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
    assert native.service.serviceConfig.User == "hermes";
    assert native.service.environment.HERMES_MANAGED == "true";
    assert native.spec.settings.model.default == "a/b";
    assert container.docker;
    assert container.failedAssertions == [ ];
    pkgs.writeText "hermes-check-module-eval" (builtins.toJSON {
      inherit (native.service.serviceConfig) ExecStart ExecStartPre;
      container = container.service.serviceConfig.ExecStart;
    });
}
// lib.optionalAttrs pkgs.stdenv.isLinux {
  vm = pkgs.testers.runNixOSTest (import ./tests/vm.nix { inherit nixosModule package; });
}
