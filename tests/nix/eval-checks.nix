# Evaluates nix/checks.nix (the flake's `checks`) with stand-ins for nixpkgs:
# `runCommand` and `writeText` return what they would build from, so a test
# can read each check's script, and `module-eval` (which asserts at
# evaluation time) really runs its assertions over the NixOS module, the
# home-manager module and uv.lock. Used by tests/test_nix_checks.py.
{ root, inputsDir, isLinux ? false }:

let
  lib = import (inputsDir + "/nixpkgs.lib/lib");
  fake = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  pkgs = {
    runCommand = name: _env: script: { inherit name script; };
    writeText = name: text: { inherit name text; };
    stdenv = { inherit isLinux; };
    testers.runNixOSTest = test: { name = "vm"; script = "runNixOSTest ${test.name or "(a module)"}"; };
  };
  checks = import (root + "/nix/checks.nix") {
    inherit pkgs lib;
    package = fake "hermes-agent";
    venv = fake "hermes-agent-env";
    src = root;
    nixosModule = { };
    nixpkgsLib = inputsDir + "/nixpkgs.lib/lib";
    inputs = { pyproject-nix = inputsDir + "/pyproject.nix"; uv2nix = inputsDir + "/uv2nix"; };
  };
in
lib.mapAttrs (_: c: c.script or c.text) checks
