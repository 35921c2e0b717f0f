#!/usr/bin/env bash
# Installs the npm test peers (@copilotkit/aimock) into tests/peers/node_modules,
# exactly as pinned by tests/peers/package-lock.json. scripts/test runs it before
# pytest. Idempotent and instant when the installed tree matches the lock file.
#
#   tests/peers/install.sh          # install if needed
#   tests/peers/install.sh --force  # reinstall
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stamp="$here/node_modules/.hermes-installed-lock.json"
cli="$here/node_modules/@copilotkit/aimock/dist/cli.js"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/peers/install.sh: node and npm are required for the LLM test peers (aimock)." >&2
    echo "  Install Node.js >= 20.15 with npm (Debian: apt-get install nodejs npm), then rerun." >&2
    exit 1
fi
# aimock's package.json asks for node >= 20.15.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 15) ? 0 : 1)'; then
    echo "tests/peers/install.sh: node $(node --version) is too old; aimock needs >= 20.15." >&2
    exit 1
fi

if [ "${1:-}" != "--force" ] && [ -f "$cli" ] && cmp -s "$here/package-lock.json" "$stamp"; then
    exit 0
fi
echo "==> installing test peers (npm ci in tests/peers)" >&2
npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
cp "$here/package-lock.json" "$stamp"
