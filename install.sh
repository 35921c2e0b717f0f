#!/usr/bin/env bash
# Install hermes from this checkout and start the first-run wizard.
#
#   ./install.sh
#
# Creates .venv from uv.lock (every extra: Telegram, Discord, Slack, Matrix,
# MCP, ACP), links `hermes`, `hermes-agent` and `hermes-acp` into ~/.local/bin,
# then runs `hermes setup` when started from a terminal. Run it again after
# `git pull` to update.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
find_python
ensure_uv

echo "==> installing hermes-agent into $PWD/.venv" >&2
"$UV" sync --frozen --no-dev --all-extras --compile-bytecode --python "$PYTHON" --quiet
# The checkout is installed editable: give its own modules bytecode too, so the
# first start is as fast as every later one even with PYTHONDONTWRITEBYTECODE.
.venv/bin/python -m compileall -q src >/dev/null

bin_dir="${XDG_BIN_HOME:-$HOME/.local/bin}"
mkdir -p "$bin_dir"
# hermes-acp too: editors start it by that name (README, "In your editor").
for name in hermes hermes-agent hermes-acp; do
    ln -sf "$PWD/.venv/bin/$name" "$bin_dir/$name"
done
echo "==> linked hermes, hermes-agent and hermes-acp into $bin_dir" >&2
case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) echo "    add it to your PATH: export PATH=\"$bin_dir:\$PATH\"" >&2 ;;
esac

if [ -t 0 ] && [ -t 1 ] && [ -z "${HERMES_SKIP_SETUP:-}" ]; then
    exec "$bin_dir/hermes" setup
fi
echo "==> installed. Next: hermes setup" >&2
