# A NixOS module template: replace "myapp" and adapt the settings format.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.myapp;
  settingsFormat = pkgs.formats.yaml { };
  configFile = settingsFormat.generate "myapp.yaml" cfg.settings;
in
{
  options.services.myapp = {
    enable = lib.mkEnableOption "myapp";

    package = lib.mkPackageOption pkgs "myapp" { };

    port = lib.mkOption {
      type = lib.types.port;
      default = 8080;
      description = "TCP port myapp listens on.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open {option}`services.myapp.port` in the firewall.";
    };

    environmentFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/secrets/myapp.env";
      description = ''
        File with KEY=value lines (API keys, tokens) loaded into the service's
        environment. Kept out of the Nix store; use sops-nix or agenix.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options.listen = lib.mkOption {
          type = lib.types.str;
          default = "127.0.0.1:${toString cfg.port}";
          description = "Address the server binds to.";
        };
      };
      default = { };
      description = "myapp configuration, rendered to YAML.";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];

    systemd.services.myapp = {
      description = "myapp";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ configFile ];

      serviceConfig = {
        ExecStart = "${lib.getExe cfg.package} --config ${configFile}";
        EnvironmentFile = lib.mkIf (cfg.environmentFile != null) cfg.environmentFile;
        DynamicUser = true;
        StateDirectory = "myapp";
        StateDirectoryMode = "0750";
        WorkingDirectory = "/var/lib/myapp";
        Restart = "on-failure";
        RestartSec = 5;

        # Hardening (check with: systemd-analyze security myapp.service)
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateUsers = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true; # drop for JIT runtimes (node, java, luajit)
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        UMask = "0077";
      };
    };
  };
}
