# The hermes-agent package: the Python environment uv2nix builds from uv.lock
# (passed in as `venv`), with every [project.scripts] entry wrapped so the
# agent's tools find Node.js, git, ripgrep, openssh and ffmpeg, and
# HERMES_BUNDLED_SKILLS pointing at the bundled skills in this output.
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
  scripts = builtins.attrNames (pyproject.project.scripts or { });
  runtimePath = lib.makeBinPath [ nodejs git ripgrep openssh ffmpeg ];
in
runCommand "hermes-agent"
{
  nativeBuildInputs = [ makeWrapper ];
  passthru = { inherit venv scripts; };
  meta = {
    description = pyproject.project.description or "hermes-agent";
    mainProgram = "hermes";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
  ''
    mkdir -p $out/bin $out/share/hermes-agent
    cp -r ${src + "/src/hermes_agent/skills/bundled"} $out/share/hermes-agent/skills
    ${lib.concatMapStringsSep "\n" (name: ''
      makeWrapper ${venv}/bin/${name} $out/bin/${name} \
        --prefix PATH : ${runtimePath} \
        --set HERMES_BUNDLED_SKILLS $out/share/hermes-agent/skills
    '') scripts}
  ''
