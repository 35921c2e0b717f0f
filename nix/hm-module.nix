# services.hermes-agent for home-manager: the gateway as a systemd user
# service (Linux) or a launchd agent (macOS), for Nix users who do not run
# NixOS. `settings`, `environment`, `environmentFiles`, `documents` and
# `mcpServers` are the NixOS module's own declarations (./common.nix); the
# deployment is the same `hermes deploy apply` of the same spec, run before
# every start, with `manager = "home-manager"` so the CLI's managed mode
# points at home-manager, not NixOS.
#
#   homeManagerModules.default = import ./nix/hm-module.nix { packages = self.packages; };
{ packages ? { } }:
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf types;

  common = import ./common.nix { inherit lib; };
  cfg = config.services.hermes-agent;
  hermes = "${cfg.package}/bin/hermes";
  inherit (pkgs.stdenv.hostPlatform) system;
  isDarwin = lib.hasSuffix "-darwin" system;

  spec = common.renderSpec cfg // {
    version = 1;
    manager = "home-manager";
    # stateDir only holds .container-identity (container mode, a NixOS feature):
    # HERMES_HOME itself is the natural place.
    stateDir = cfg.home;
    inherit (cfg) workingDirectory;
  };
  specFile = pkgs.writeText "hermes-deployment.json" (builtins.toJSON spec);
  apply = "${hermes} deploy apply ${specFile} --home ${lib.escapeShellArg cfg.home}";
  gatewayArgs = [ "gateway" "run" ] ++ cfg.extraArgs;
  environment = {
    HERMES_HOME = cfg.home;
    HERMES_MANAGED = "home-manager";
  };

  # launchd has no ExecStartPre: the agent's program applies, then becomes the gateway.
  launchdStart = pkgs.writeShellScript "hermes-agent-launchd" ''
    set -eu
    ${apply}
    cd ${lib.escapeShellArg cfg.workingDirectory}
    exec ${hermes} ${lib.escapeShellArgs gatewayArgs}
  '';
  serviceLog = "${cfg.home}/logs/gateway.service.log";

  # sops-nix's and agenix's home-manager modules install secrets with these
  # user units (Linux): start after them, so environmentFiles exist.
  secretsUnits = map (name: "${name}.service")
    (builtins.filter (name: config.systemd.user.services ? ${name}) [ "sops-nix" "agenix" ]);
in
{
  options.services.hermes-agent = common.options // {
    enable = mkEnableOption "the hermes-agent gateway as a user service (systemd user unit or launchd agent)";

    package = mkOption {
      type = types.package;
      default = packages.${system}.default or (throw
        "services.hermes-agent.package: the hermes-agent flake has no package for ${system}; set the option");
      defaultText = lib.literalExpression "hermes-agent.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The hermes-agent package: by default the one the hermes-agent flake builds for this system. Also put on `home.packages`.";
    };

    home = mkOption {
      type = types.str;
      default = "${config.home.homeDirectory}/.hermes";
      defaultText = lib.literalExpression ''"''${config.home.homeDirectory}/.hermes"'';
      description = "HERMES_HOME of the service and of your `hermes` CLI (managed: `hermes config set` refuses).";
    };

    workingDirectory = mkOption {
      type = types.str;
      default = "${cfg.home}/workspace";
      defaultText = lib.literalExpression ''"''${config.services.hermes-agent.home}/workspace"'';
      description = "The agent's workspace: where its terminal tool runs and `documents` are installed.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra arguments of `hermes gateway run`.";
    };

    deploymentSpec = mkOption {
      type = types.attrs;
      internal = true;
      readOnly = true;
      description = "The deployment spec the module renders (for tests and debugging).";
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      services.hermes-agent.deploymentSpec = spec;
      assertions = [
        {
          assertion = lib.hasPrefix "/" cfg.home && lib.hasPrefix "/" cfg.workingDirectory;
          message = "services.hermes-agent: home and workingDirectory must be absolute paths.";
        }
      ] ++ common.assertions "services.hermes-agent" cfg;
      warnings = common.warnings "services.hermes-agent" cfg;
      home.packages = [ cfg.package ];
      # Your own `hermes` uses the service's home, so it sees managed mode too.
      home.sessionVariables.HERMES_HOME = cfg.home;
    }

    (mkIf (!isDarwin) {
      systemd.user.services.hermes-agent = {
        Unit = {
          Description = "hermes-agent gateway";
          After = [ "network-online.target" ] ++ secretsUnits;
          Wants = [ "network-online.target" ] ++ secretsUnits;
        };
        Service = {
          Type = "simple";
          Environment = lib.mapAttrsToList (k: v: "${k}=${v}") environment;
          # "-": on the first start the directory does not exist yet when
          # ExecStartPre runs; the apply creates it before ExecStart needs it.
          WorkingDirectory = "-${cfg.workingDirectory}";
          # Re-applied before every start: a rotated secret in environmentFiles
          # reaches the agent with `systemctl --user restart hermes-agent`.
          ExecStartPre = apply;
          ExecStart = "${hermes} ${lib.escapeShellArgs gatewayArgs}";
          Restart = "always";
          RestartSec = 5;
          UMask = "0077";
        };
        Install.WantedBy = [ "default.target" ];
      };
    })

    (mkIf isDarwin {
      launchd.agents.hermes-agent = {
        enable = true;
        config = {
          Label = "org.nousresearch.hermes-agent";
          ProgramArguments = [ launchdStart ];
          EnvironmentVariables = environment;
          RunAtLoad = true;
          KeepAlive = true;
          ThrottleInterval = 5;
          Umask = 63; # 0077
          StandardOutPath = serviceLog;
          StandardErrorPath = serviceLog;
        };
      };
    })
  ]);
}
