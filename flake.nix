{
  description = "hermes-agent: a personal AI agent for the terminal, chat platforms, editors and NixOS";

  # Pinned in flake.lock:
  # - nixpkgs: nixos-25.11 at 3ceaaa8bc963ced4d830e06ea2d0863b6490ff03 (2026-01-20), narHash
  #   taken from the public flake.lock of sglre6355/nixos-config (commit 6718494a, file flake.lock).
  # - pyproject-nix, uv2nix, build-system-pkgs: the revisions CI evaluates with (the source
  #   trees of ../shared/nix-inputs; docs/nixos.md, "Pinned inputs", says how each hash was found).
  # A system flake on another release keeps one nixpkgs with
  #   inputs.hermes-agent.inputs.nixpkgs.follows = "nixpkgs";
  # (the other inputs follow this flake's nixpkgs, so they follow yours too).
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, pyproject-nix, uv2nix, pyproject-build-systems, ... }:
    let
      inherit (nixpkgs) lib;
      # No x86_64-darwin: uv.lock's cryptography (50.x, a dependency of the
      # extras) publishes no Intel macOS wheel, so the wheel-only package set
      # cannot be built there (tests/test_nix_uv_lock.py checks each system).
      # (The development shell, which installs with uv instead, is offered there too.)
      systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ];
      forSystems = names: f: lib.genAttrs names (system: f nixpkgs.legacyPackages.${system});
      forAllSystems = forSystems systems;

      # The Python environment, built from uv.lock (wheels where uv.lock has
      # them; hermes-agent itself from source with hatchling).
      workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = ./.; };
      projectOverlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };
      pythonSet = pkgs:
        (pkgs.callPackage pyproject-nix.build.packages { python = pkgs.python311; }).overrideScope
          (lib.composeManyExtensions [ pyproject-build-systems.overlays.default projectOverlay ]);
      # hermes-agent with every extra (gateway platforms, MCP, ACP), without
      # the dev dependency group.
      pyproject = lib.importTOML ./pyproject.toml;
      deps = { hermes-agent = builtins.attrNames (pyproject.project.optional-dependencies or { }); };
      venvFor = pkgs: (pythonSet pkgs).mkVirtualEnv "hermes-agent-env" deps;
      packageFor = pkgs: pkgs.callPackage ./nix/package.nix { venv = venvFor pkgs; src = ./.; };

      # The modules carry this flake's packages in their closure: `package`
      # defaults to the one built for the host's system, with no overlay and
      # no `pkgs.hermes-agent` needed.
      nixosModule = import ./nix/module.nix { packages = self.packages; };
      homeManagerModule = import ./nix/hm-module.nix { packages = self.packages; };
    in
    {
      packages = forAllSystems (pkgs: {
        default = packageFor pkgs;
        hermes-agent = packageFor pkgs;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${packageFor pkgs}/bin/hermes";
        };
      });

      devShells = forSystems (systems ++ [ "x86_64-darwin" ]) (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.python311 pkgs.uv pkgs.nodejs_20 pkgs.ripgrep pkgs.git pkgs.openssh pkgs.ffmpeg ];
          env = {
            UV_PYTHON = "${pkgs.python311}/bin/python3.11";
            UV_PYTHON_DOWNLOADS = "never";
          };
          # Sync .venv on first entry and whenever uv.lock changed since the
          # last sync (the stamp is a copy of the uv.lock it was synced from).
          shellHook = ''
            if [ ! -x .venv/bin/python ] || ! cmp -s uv.lock .venv/.uv-lock-stamp; then
              echo "hermes-agent: uv sync --all-extras (uv.lock changed)" >&2
              uv sync --all-extras && cp uv.lock .venv/.uv-lock-stamp
            fi
            export PATH="$PWD/.venv/bin:$PATH"
          '';
        };
      });

      nixosModules = {
        default = nixosModule;
        hermes-agent = nixosModule;
      };

      homeManagerModules = {
        default = homeManagerModule;
        hermes-agent = homeManagerModule;
      };

      checks = forAllSystems (pkgs: import ./nix/checks.nix {
        inherit pkgs lib nixosModule;
        package = packageFor pkgs;
        venv = venvFor pkgs;
        src = ./.;
        nixpkgsLib = "${nixpkgs}/lib";
        inputs = { inherit pyproject-nix uv2nix; };
      });
    };
}
