# Evaluates nix/module.nix with nixpkgs' lib alone (no nixpkgs, nothing built):
# a stub module declares the NixOS options the module sets, and `pkgs` is a
# set of fake derivations (with no `hermes-agent` in it: the module's package
# comes from the flake's packages, passed to nix/module.nix as the flake does).
# Used by tests/test_nix_module.py and the flake's module-eval check.
#
# The stub models what current NixOS does with users: unless
# systemd.sysusers.enable or services.userborn.enable is set, the activation
# scripts `users` and `groups` exist; with either, they do not (the users are
# created by a unit, later), so an activation script depending on them, or
# running `install -o hermes`, would break the first switch. `activationProblems`
# lists such problems.
#
#   nix-instantiate --eval --strict --json tests/nix/eval-module.nix \
#     --arg libPath /path/to/nixpkgs.lib/lib --arg configuration ./my-test-config.nix
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
  # a store path whose name tells the text's hash apart, without a store
  writeFake = name: text: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" text)}-${name}";

  pkgs = lib.genAttrs
    [ "nodejs" "git" "ripgrep" "openssh" "ffmpeg" "coreutils" "bash" "util-linux" "docker" "podman" "nix" ]
    fakeDrv // {
    writeText = writeFake;
    writeScript = writeFake;
    writeShellScript = writeFake;
    stdenv.hostPlatform.system = system;
  };

  # What flake.nix passes to nix/module.nix: its own packages, per system.
  flakePackages.${system}.default = fakeDrv "hermes-agent";

  anything = mkOption { type = types.anything; default = { }; };
  unitType = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      serviceConfig = mkOption { type = types.attrsOf types.anything; default = { }; };
      environment = mkOption { type = types.attrsOf types.str; default = { }; };
      path = mkOption { type = types.listOf types.package; default = [ ]; };
      unitConfig = mkOption { type = types.attrsOf types.anything; default = { }; };
      wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
      wants = mkOption { type = types.listOf types.str; default = [ ]; };
      after = mkOption { type = types.listOf types.str; default = [ ]; };
      requires = mkOption { type = types.listOf types.str; default = [ ]; };
      description = mkOption { type = types.str; default = ""; };
    };
  };

  # The NixOS options nix/module.nix sets, declared as loosely as NixOS does.
  nixosStub = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      users.users = mkOption { type = types.attrsOf (types.attrsOf types.anything); default = { }; };
      users.groups = mkOption { type = types.attrsOf (types.attrsOf types.anything); default = { }; };
      systemd.services = mkOption { type = types.attrsOf unitType; default = { }; };
      systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
      systemd.tmpfiles.settings = mkOption {
        type = types.attrsOf (types.attrsOf (types.attrsOf (types.attrsOf types.str)));
        default = { };
      };
      systemd.sysusers.enable = mkOption { type = types.bool; default = false; };
      services.userborn.enable = mkOption { type = types.bool; default = false; };
      system.activationScripts = mkOption {
        type = types.attrsOf (types.submodule {
          options.deps = mkOption { type = types.listOf types.str; default = [ ]; };
          options.text = mkOption { type = types.lines; default = ""; };
        });
        default = { };
      };
      environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
      environment.variables = mkOption { type = types.attrsOf types.str; default = { }; };
      virtualisation.docker.enable = mkOption { type = types.bool; default = false; };
      virtualisation.docker.package = mkOption { type = types.package; default = pkgs.docker; };
      virtualisation.podman.enable = mkOption { type = types.bool; default = false; };
      virtualisation.podman.package = mkOption { type = types.package; default = pkgs.podman; };
      nix.package = mkOption { type = types.package; default = pkgs.nix; };
    };
  };

  # As NixOS: the `users` and `groups` activation scripts exist only when users
  # are created by the activation (neither sysusers nor userborn).
  nixosUsers = { config, ... }: {
    config.system.activationScripts = lib.mkIf (!config.systemd.sysusers.enable && !config.services.userborn.enable) {
      users.text = "# creates users";
      groups.text = "# creates groups";
    };
  };

  evaluated = lib.evalModules {
    modules = [
      nixosStub
      nixosUsers
      (import ../../nix/module.nix { packages = flakePackages; })
      { _module.args.pkgs = pkgs; }
      configuration
    ] ++ extraConfigurations;
  };

  c = evaluated.config;
  cfg = c.services.hermes-agent;
  service = c.systemd.services.hermes-agent or null;

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
  users = lib.mapAttrs (_: u: builtins.removeAttrs u [ ]) c.users.users;
  groups = builtins.attrNames c.users.groups;
  tmpfiles = c.systemd.tmpfiles.rules;
  tmpfilesSettings = c.systemd.tmpfiles.settings;
  activation = c.system.activationScripts.hermes-agent or null;
  activationScripts = builtins.attrNames c.system.activationScripts;
  # What would break a switch: a dependency on an activation script that does
  # not exist, or an activation script that needs the service user before
  # sysusers/userborn created it.
  activationProblems =
    let
      scripts = c.system.activationScripts;
      userless = c.systemd.sysusers.enable || c.services.userborn.enable;
    in
    lib.concatLists (lib.mapAttrsToList
      (name: script:
        map (d: "${name}: depends on missing activation script ${d}") (builtins.filter (d: !(scripts ? ${d})) script.deps)
        ++ lib.optional (userless && builtins.match ".*(-o |-u |chown ).*" script.text != null)
          "${name}: uses a user before sysusers/userborn created it")
      scripts);
  systemPackages = map toString c.environment.systemPackages;
  variables = c.environment.variables;
  docker = c.virtualisation.docker.enable;
  podman = c.virtualisation.podman.enable;
  spec = if cfg.enable then cfg.deploymentSpec else null;
  service = if service == null then null else {
    inherit (service) serviceConfig environment wantedBy after wants requires description unitConfig;
    path = map toString service.path;
  };
  # every option under services.hermes-agent, as dotted names (for the docs)
  options = map (o: o.name) optionDocs;
  # name, type, default and description of each (scripts/gen_nix_options_docs.py)
  inherit optionDocs;
}
