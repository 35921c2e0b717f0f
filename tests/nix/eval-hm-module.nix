# Evaluates nix/hm-module.nix with nixpkgs' lib alone, as eval-module.nix does
# for the NixOS module: a stub module declares the home-manager options the
# module sets (home.*, systemd.user.services, launchd.agents, assertions,
# warnings) about as loosely as home-manager does, and `pkgs` is a set of fake
# derivations for `system` (x86_64-linux: a systemd user service;
# aarch64-darwin: a launchd agent). Used by tests/test_nix_hm_module.py.
{ libPath, configuration ? { }, extraConfigurations ? [ ], system ? "x86_64-linux" }:

let
  lib = import libPath;
  inherit (lib) mkOption types;

  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    out = fakeDrv name;
  };
  writeFake = name: text: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" text)}-${name}";
  pkgs = {
    writeText = writeFake;
    # A path that also carries its text, so a test can read what launchd runs.
    writeShellScript = name: text: { outPath = writeFake name text; inherit text; };
    stdenv.hostPlatform.system = system;
  };
  flakePackages.${system}.default = fakeDrv "hermes-agent";

  anything = types.attrsOf types.anything;
  hmStub = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      home.homeDirectory = mkOption { type = types.path; default = "/home/alice"; };
      home.packages = mkOption { type = types.listOf types.package; default = [ ]; };
      home.sessionVariables = mkOption { type = types.attrsOf types.str; default = { }; };
      systemd.user.services = mkOption { type = types.attrsOf anything; default = { }; };
      launchd.agents = mkOption {
        type = types.attrsOf (types.submodule {
          options.enable = mkOption { type = types.bool; default = false; };
          options.config = mkOption { type = anything; default = { }; };
        });
        default = { };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [
      hmStub
      (import ../../nix/hm-module.nix { packages = flakePackages; })
      { _module.args.pkgs = pkgs; }
      configuration
    ] ++ extraConfigurations;
  };
  c = evaluated.config;
  cfg = c.services.hermes-agent;

  optionDocs = map
    (o: {
      name = lib.concatStringsSep "." o.loc;
      inherit (o) type;
      default = if o ? default then o.default.text or (builtins.toJSON o.default) else null;
      description = o.description or "";
    })
    (builtins.filter (o: o.visible && !o.internal)
      (lib.optionAttrSetToDocList evaluated.options.services.hermes-agent));
in
{
  enable = cfg.enable;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
  inherit (c) warnings;
  packages = map toString c.home.packages;
  sessionVariables = c.home.sessionVariables;
  spec = if cfg.enable then cfg.deploymentSpec else null;
  systemd = c.systemd.user.services.hermes-agent or null;
  launchd = c.launchd.agents.hermes-agent or null;
  launchdScripts = map (s: s.text) (builtins.filter (s: builtins.isAttrs s)
    (c.launchd.agents.hermes-agent.config.ProgramArguments or [ ]));
  options = map (o: o.name) optionDocs;
  inherit optionDocs;
}
