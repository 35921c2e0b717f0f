# What the NixOS module (nix/module.nix) and the home-manager module
# (nix/hm-module.nix) share: the declarations of `settings`, `environment`,
# `environmentFiles`, `documents` and `mcpServers`, how they are rendered into
# the deployment spec (docs/deployment-spec.md), and the checks on MCP
# servers. One file, imported by both, so the two never drift apart.
{ lib }:

let
  inherit (lib) mkOption types;

  # `settings`: definitions are deep-merged like lib.recursiveUpdate: mappings
  # merge key by key, any other value (list, scalar) from a later definition
  # replaces an earlier one. Built on attrsOf, so mkIf / mkDefault / mkForce
  # work at any depth inside the value (priorities compared per key).
  settingsValue = types.mkOptionType {
    name = "hermes-settings-value";
    description = "YAML value (deep-merged)";
    check = _: true;
    merge = loc: defs:
      if lib.all (d: builtins.isAttrs d.value && !lib.isDerivation d.value) defs
      then (types.attrsOf settingsValue).merge loc defs
      else (lib.last defs).value;
  };
  settingsType = types.attrsOf settingsValue // {
    description = "attribute set deep-merged across definitions (lib.recursiveUpdate semantics)";
  };

  nullOr = t: mkOption { type = types.nullOr t; default = null; };

  mcpServerModule = { name, ... }: {
    options = {
      command = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Command that starts a stdio MCP server (set exactly one of `command` and `url`).";
      };
      args = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Arguments of `command`.";
      };
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Environment of the stdio server (non-secret: it is written to config.yaml).";
      };
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "URL of an HTTP MCP server (instead of `command`).";
      };
      headers = mkOption {
        type = types.attrsOf types.str;
        default = { };
        example = lib.literalExpression ''{ Authorization = "Bearer ''${GITHUB_TOKEN}"; }'';
        description = ''
          HTTP headers sent to `url`. They are written to config.yaml and the Nix store:
          put a token in an `environmentFiles` file and refer to it as `''${NAME}`
          (write `"Bearer \''${NAME}"` or `'''Bearer '''''${NAME}'''` in Nix), which hermes
          replaces from HERMES_HOME/.env when it connects to the server. A literal value of an Authorization-like
          header gets a warning.
        '';
      };
      auth = mkOption {
        type = types.nullOr (types.enum [ "oauth" ]);
        default = null;
        description = "`\"oauth\"` to authenticate to `url` with OAuth (tokens in HERMES_HOME/mcp-tokens).";
      };
      oauth = mkOption {
        type = types.attrsOf (types.either types.str types.port);
        default = { };
        example = lib.literalExpression ''{ client_id = "hermes"; client_secret = "''${NOTION_CLIENT_SECRET}"; callback_port = 8765; }'';
        description = ''
          OAuth client settings for an `auth = "oauth"` server: `client_id` and `client_secret`
          of a pre-registered client, `client_metadata_url`, `scope`, `callback_port`, `grant`
          (`client_credentials`, `identity_assertion`) and its keys. Put secrets in an
          `environmentFiles` file and write them as `''${NAME}`.
        '';
      };
      enabled = mkOption {
        type = types.bool;
        default = true;
        description = "Whether the agent connects to this server.";
      };
      timeout = nullOr types.number // { description = "Seconds a tool call may take."; };
      connect_timeout = nullOr types.number // { description = "Seconds to connect to the server."; };
      tools = {
        include = nullOr (types.listOf types.str) // { description = "Only these tools of the server."; };
        exclude = nullOr (types.listOf types.str) // { description = "All tools of the server but these."; };
      };
      sampling = {
        enabled = nullOr types.bool // { description = "Whether the server may ask the agent's model for completions."; };
        model = nullOr types.str // { description = "Model used for sampling requests."; };
        max_tokens_cap = nullOr types.int // { description = "Upper bound on max_tokens of a sampling request."; };
        timeout = nullOr types.number // { description = "Seconds a sampling request may take."; };
        max_rpm = nullOr types.int // { description = "Sampling requests allowed per minute."; };
      };
    };
  };

  # A path value of `documents` becomes {source = "/nix/store/..."}; a string
  # is the file's content.
  renderDocument = _: v:
    if builtins.isPath v || (builtins.isString v && lib.isStorePath v)
    then { source = "${v}"; }
    else v;

  # An MCP server as config.yaml holds it: options left unset (null) and
  # empty sections (env, headers, tools, sampling) are omitted.
  renderServer = server:
    let
      dropNulls = lib.filterAttrs (_: v: v != null);
      nested = lib.mapAttrs (_: v: if builtins.isAttrs v then dropNulls v else v)
        (builtins.removeAttrs server [ "_module" ]);
    in
    lib.filterAttrs (_: v: v != null && v != { }) nested;

  # Header names whose value is a credential. Their value should come from
  # an environment file through `${VAR}`, never sit in the store.
  secretHeader = name:
    builtins.match "(proxy-)?authorization|.*(token|api[-_]?key|secret|password|cookie|credential).*"
      (lib.toLower name) != null;
  referencesVariable = value: builtins.match ".*\\$\\{[A-Za-z_][A-Za-z0-9_]*}.*" value != null;
in
{
  inherit settingsType;

  # The option declarations both modules share (attached under their own
  # `services.hermes-agent`).
  options = {
    settings = mkOption {
      type = settingsType;
      default = { };
      example = lib.literalExpression ''{ model.default = "anthropic/claude-sonnet-4"; max_turns = 60; }'';
      description = ''
        Configuration merged into config.yaml (Nix keys win; keys a user or the
        agent added are kept; keys Nix stops setting are removed). Definitions
        are deep-merged with lib.recursiveUpdate semantics.
      '';
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Non-secret environment variables, the first bindings of HERMES_HOME/.env (they end up in the store).";
    };

    environmentFiles = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "/run/secrets/hermes.env" ];
      description = ''
        Files in .env syntax (KEY=value) read at every apply and appended to .env
        (0600) in order; a later binding wins. Strings, never copied into the
        store: point them at sops-nix or agenix secrets. A missing file is an error.
      '';
    };

    documents = mkOption {
      type = types.attrsOf (types.either types.str types.path);
      default = { };
      example = lib.literalExpression ''{ "SOUL.md" = "You are terse."; "USER.md" = ./USER.md; }'';
      description = "Files installed into `workingDirectory` on every switch (a string is the content, a path is copied); SOUL.md and USER.md are read by the agent.";
    };

    mcpServers = mkOption {
      type = types.attrsOf (types.submodule mcpServerModule);
      default = { };
      description = "MCP servers merged into `settings.mcp_servers`, additive with servers a user added.";
    };
  };

  # The shared part of the deployment spec.
  renderSpec = cfg: {
    inherit (cfg) settings environment environmentFiles;
    documents = lib.mapAttrs renderDocument cfg.documents;
    mcpServers = lib.mapAttrs (_: renderServer) cfg.mcpServers;
  };

  # `prefix` names the option path in messages (services.hermes-agent).
  assertions = prefix: cfg: lib.concatLists (lib.mapAttrsToList
    (name: server: [
      {
        assertion = (server.command == null) != (server.url == null);
        message = "${prefix}.mcpServers.${name}: set exactly one of `command` (a stdio server) and `url` (an HTTP server)"
          + (if server.command == null then ", not neither." else ", not both.");
      }
      {
        # The rule of hermes_agent.mcp.config.NAME_RE: the name becomes part of tool names.
        assertion = builtins.match "[A-Za-z0-9]([A-Za-z0-9_-]{0,38}[A-Za-z0-9-])?" name != null && !lib.hasInfix "__" name;
        message = "${prefix}.mcpServers.${name}: a server name is 1-40 letters, digits, '-' or '_' (no '__', not ending in '_'), starting with a letter or digit (it becomes part of tool names).";
      }
    ])
    cfg.mcpServers);

  warnings = prefix: cfg: lib.concatLists (lib.mapAttrsToList
    (name: server: lib.concatMap
      (header:
        lib.optional (secretHeader header && !referencesVariable server.headers.${header})
          ("${prefix}.mcpServers.${name}.headers.${header} holds a literal credential, which ends up in the "
            + "world-readable Nix store and config.yaml. Put it in an environmentFiles file (e.g. "
            + "GITHUB_TOKEN=...) and write the header as \"Bearer \\\${GITHUB_TOKEN}\"; hermes fills it in "
            + "from .env when it connects to the server."))
      (builtins.attrNames server.headers))
    cfg.mcpServers);
}
