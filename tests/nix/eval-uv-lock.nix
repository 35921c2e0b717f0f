# Loads the uv2nix workspace of uv.lock with pyproject.nix and uv2nix, using
# nixpkgs' lib alone (nothing is built or fetched), and answers two questions
# the flake's package depends on:
#
# 1. Does uv.lock agree with pyproject.toml? The hermes-agent entry of the
#    lock must list the same dependencies, extras and version specifiers as
#    [project] (self-referencing extras such as `all` expanded, as uv does).
#    A lock that drifted (a dependency added to pyproject.toml without
#    `uv lock`) would build a package that fails at run time.
# 2. Does every runtime dependency (core and every extra: what the flake puts
#    in the package) resolve to a *wheel* on each system the flake builds?
#    The flake's overlay prefers wheels; a package that falls back to its
#    sdist needs build overrides nobody wrote. Resolution runs uv2nix's own
#    overlay (lock1.resolveDependencies, pypa.selectWheels, build.remote's
#    format choice) against a stand-in interpreter (CPython 3.11, glibc 2.40
#    on Linux, as in nixos-25.11) and stand-ins for what nixpkgs provides.
#
#   nix-instantiate --eval --strict --json tests/nix/eval-uv-lock.nix \
#     --arg libPath .../nixpkgs.lib/lib --arg pyprojectNix .../pyproject.nix \
#     --arg uv2nix .../uv2nix --arg workspaceRoot ./.
#
# Used by tests/test_nix_uv_lock.py and the flake's module-eval check.
{ libPath
, pyprojectNix
, uv2nix
, workspaceRoot
, systems ? [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ]
}:

let
  lib = import libPath;
  inherit (builtins) filter map attrNames head length sort toJSON;

  pyproject-nix = import ((toString pyprojectNix) + "/default.nix") { inherit lib; };
  uv = import ((toString uv2nix) + "/lib") { inherit lib pyproject-nix; };
  inherit (pyproject-nix.lib) pep508 pep440;

  pyproject = lib.importTOML (workspaceRoot + "/pyproject.toml");
  lock = lib.importTOML (workspaceRoot + "/uv.lock");
  project = pyproject.project;

  # --- 1. drift between pyproject.toml and uv.lock ----------------------------

  normalize = name: lib.toLower (builtins.replaceStrings [ "_" "." ] [ "-" "-" ] name);
  self' = normalize project.name;
  parse = pep508.parseString;
  extrasOf = project.optional-dependencies or { };

  # Requirements of an extra, with `hermes-agent[x,y]` replaced by x's and y's.
  expand = seen: extra:
    lib.concatMap
      (r: if normalize r.name == self' then lib.concatMap (e: if lib.elem e seen then [ ] else expand (seen ++ [ e ]) e) r.extras else [ r ])
      (map parse (extrasOf.${extra} or [ ]));
  wanted = {
    dependencies = map parse (project.dependencies or [ ]);
  } // lib.mapAttrs (extra: _: expand [ extra ] extra) extrasOf;

  lockEntries = filter (p: normalize p.name == self') lock.package;
  locked = head lockEntries;
  lockedNames = deps: sort (a: b: a < b) (lib.unique (map (d: normalize d.name) deps));
  names = reqs: sort (a: b: a < b) (lib.unique (map (r: normalize r.name) reqs));
  conds = cs: sort (a: b: a < b) (map toJSON cs);
  requiresDist = locked.metadata.requires-dist or [ ];
  specifierLocked = r: lib.any
    (e: normalize e.name == normalize r.name
      && conds (pep440.parseVersionConds (e.specifier or "")) == conds r.conditions)
    requiresDist;

  driftProblems =
    if length lockEntries != 1 then [ "uv.lock has no single ${self'} package entry" ]
    else
      lib.optional (names wanted.dependencies != lockedNames (locked.dependencies or [ ]))
        "dependencies: pyproject.toml has ${toJSON (names wanted.dependencies)}, uv.lock ${toJSON (lockedNames (locked.dependencies or [ ]))}"
      ++ lib.optional (sort (a: b: a < b) (attrNames extrasOf) != sort (a: b: a < b) (attrNames (locked.optional-dependencies or { })))
        "extras: pyproject.toml has ${toJSON (attrNames extrasOf)}, uv.lock ${toJSON (attrNames (locked.optional-dependencies or { }))}"
      ++ lib.concatMap
        (extra: lib.optional (names wanted.${extra} != lockedNames (locked.optional-dependencies.${extra} or [ ]))
          "extra ${extra}: pyproject.toml has ${toJSON (names wanted.${extra})}, uv.lock ${toJSON (lockedNames (locked.optional-dependencies.${extra} or [ ]))}")
        (attrNames extrasOf)
      ++ map (r: "${r.name}: the version specifier in pyproject.toml is not the one uv.lock was made from")
        (filter (r: !specifierLocked r) (lib.concatLists (lib.attrValues wanted)))
      ++ lib.optional ((project.requires-python or "") != (lock.requires-python or ""))
        "requires-python: pyproject.toml has ${project.requires-python or "nothing"}, uv.lock ${lock.requires-python or "nothing"}";

  # --- 2. a wheel for every runtime dependency, per system ---------------------

  workspace = uv.workspace.loadWorkspace { inherit workspaceRoot; };
  # What the flake installs: hermes-agent with every extra, no dev group.
  runtime = { ${self'} = attrNames extrasOf; };

  stdenvFor = system:
    let platform = lib.systems.elaborate system;
    in {
      hostPlatform = platform;
      buildPlatform = platform;
      targetPlatform = platform;
      inherit (platform) isLinux isDarwin;
      cc.libc =
        if platform.isLinux
        then { pname = "glibc"; version = "2.40"; linuxHeaders.version = "6.12"; }
        else { pname = "libSystem"; version = "14.4"; };
      # stdenv.mkDerivation, both forms; nothing is built, attributes are read.
      mkDerivation = f: if builtins.isFunction f then lib.fix f else f;
    };

  resolveFor = system:
    let
      stdenv = stdenvFor system;
      python = {
        pname = "python3";
        version = "3.11.14";
        passthru = {
          implementation = "cpython";
          pythonVersion = "3.11";
          sourceVersion = { major = "3"; minor = "11"; patch = "14"; suffix = ""; };
        };
        inherit stdenv;
      };
      stub = name: { inherit name; };
      provided = {
        inherit stdenv python;
        fetchurl = a: a // { passthru.url = a.url or ""; };
        unzip = stub "unzip";
        autoPatchelfHook = stub "autoPatchelfHook";
        pythonManylinuxPackages = { manylinux1 = [ ]; manylinux2010 = [ ]; manylinux2014 = [ ]; };
        pyprojectHook = stub "pyprojectHook";
        pyprojectWheelHook = stub "pyprojectWheelHook";
        pyprojectEditableHook = stub "pyprojectEditableHook";
        resolveBuildSystem = _: [ ];
      };
      callPackage = f: args: f (builtins.intersectAttrs (builtins.functionArgs f) provided // args);
      overlay = workspace.mkPyprojectOverlay {
        sourcePreference = "wheel";
        dependencies = runtime;
      };
      prev = provided // { inherit callPackage; };
      resolvedSet = overlay final prev;
      final = prev // resolvedSet;

      # uv2nix's overlay holds every package of the lock's resolution, dev
      # tools included; what the flake installs is the closure of
      # hermes-agent's dependencies and extras on this system (markers
      # evaluated like uv2nix does), following each package's own
      # dependencies and requested extras.
      environ = pep508.mkEnviron python;
      applies = d: !(d ? marker) || pep508.evalMarkers environ (pep508.parseMarkers d.marker);
      roots = filter applies ((locked.dependencies or [ ]) ++ lib.concatLists (lib.attrValues (locked.optional-dependencies or { })));
      step = name: extras:
        let p = resolvedSet.${name}.passthru;
        in lib.mapAttrsToList (n: e: { key = n; extras = e; }) (p.dependencies
          // lib.foldl' (acc: x: acc // (p.optional-dependencies.${x} or { })) { } extras);
      closure = builtins.genericClosure {
        startSet = map (d: { key = normalize d.name; extras = d.extra or [ ]; }) roots;
        operator = item: step item.key item.extras;
      };
      runtimeNames = lib.unique (map (i: i.key) closure);
    in
    lib.genAttrs runtimeNames (name:
      let drv = resolvedSet.${name}; in { inherit (drv.passthru) format; version = drv.version; file = drv.src.name or null; });

  resolved = lib.genAttrs systems resolveFor;
  wheelProblems = lib.concatMap
    (system: lib.mapAttrsToList
      (name: p: "${name} ${p.version}: no wheel for ${system} (uv2nix would build its sdist)")
      (lib.filterAttrs (_: p: p.format != "wheel") resolved.${system}))
    systems;
in
{
  problems = driftProblems ++ wheelProblems;
  inherit driftProblems wheelProblems;
  # system -> package -> the wheel uv2nix picks
  wheels = lib.mapAttrs (_: lib.mapAttrs (_: p: p.file)) resolved;
}
