# The hermes-agent package: the Python environment uv2nix builds from uv.lock
# (passed in as `venv`), with every console script the *built* hermes-agent
# wheel declares (its dist-info entry_points.txt, not a list written here)
# wrapped so the agent's tools find Node.js, git, ripgrep, openssh and ffmpeg,
# and HERMES_BUNDLED_SKILLS pointing at the bundled skills in this output.
# The entry-points-sync check compares the result with pyproject.toml.
{ lib
, runCommand
, makeWrapper
, nodejs
, git
, ripgrep
, openssh
, ffmpeg
, venv
, src
}:

let
  pyproject = lib.importTOML (src + "/pyproject.toml");
  runtimePath = lib.makeBinPath [ nodejs git ripgrep openssh ffmpeg ];
in
runCommand "hermes-agent"
{
  nativeBuildInputs = [ makeWrapper ];
  passthru = { inherit venv; };
  meta = {
    description = pyproject.project.description or "hermes-agent";
    mainProgram = "hermes";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
  ''
    mkdir -p $out/bin $out/share/hermes-agent
    cp -r ${src + "/src/hermes_agent/skills/bundled"} $out/share/hermes-agent/skills
    scripts=$(${venv}/bin/python - <<'PY'
    import importlib.metadata as m
    print(" ".join(e.name for e in m.distribution("hermes-agent").entry_points if e.group == "console_scripts"))
    PY
    )
    test -n "$scripts" || { echo "hermes-agent declares no console scripts" >&2; exit 1; }
    for name in $scripts; do
      makeWrapper ${venv}/bin/$name $out/bin/$name \
        --prefix PATH : ${runtimePath} \
        --set HERMES_BUNDLED_SKILLS $out/share/hermes-agent/skills
    done
  ''
