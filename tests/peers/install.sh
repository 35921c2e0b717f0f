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

# Up to date: nothing to do here (the sections below still run).
if [ "${1:-}" = "--force" ] || [ ! -f "$cli" ] || ! cmp -s "$here/package-lock.json" "$stamp"; then
    echo "==> installing test peers (npm ci in tests/peers)" >&2
    npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
    cp "$here/package-lock.json" "$stamp"
fi

# ---- ripgrep (Debian package): search_files' fast path, tested for real -----------
# tests/test_file_tools.py runs search_files through `rg` and through the Python
# fallback. Idempotent: nothing happens when rg is already on PATH.
if ! command -v rg >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing ripgrep (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends ripgrep >&2
    else
        echo "tests/peers/install.sh: ripgrep (rg) is required by the file tool tests." >&2
        echo "  Install it (Debian/Ubuntu: sudo apt-get install ripgrep), then rerun." >&2
        exit 1
    fi
fi

# ---- OpenSSH server and client (Debian packages): the terminal tool's ssh backend ----
# tests/test_terminal_tool.py starts its own `sshd -D -f CONFIG` on 127.0.0.1 (a free
# port, a generated host key, a test key in authorized_keys). Idempotent: nothing
# happens when both sshd and ssh are installed. sshd also needs its privilege
# separation directory, which a container without systemd does not create.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing openssh-server and openssh-client (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends openssh-server openssh-client >&2
    else
        echo "tests/peers/install.sh: sshd and ssh are required by the terminal ssh tests." >&2
        echo "  Install them (Debian/Ubuntu: sudo apt-get install openssh-server openssh-client)." >&2
        exit 1
    fi
fi
if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd
fi

# ---- Nix and systemd-analyze (Debian packages): the NixOS module tests ----------------
# tests/test_nix_parse.py runs `nix-instantiate --parse` on every .nix file and
# tests/test_nix_module.py evaluates nix/module.nix with nixpkgs' lib (nix-bin), then
# scores the generated unit with `systemd-analyze security --offline=true` (systemd).
# Idempotent: nothing happens when both commands are on PATH.
if ! command -v nix-instantiate >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing nix-bin and systemd (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq --no-install-recommends nix-bin systemd >&2 2>/dev/null; then
            apt-get update -qq >&2
            apt-get install -y -qq --no-install-recommends nix-bin systemd >&2
        fi
    else
        echo "tests/peers/install.sh: nix-instantiate (nix-bin) and systemd-analyze (systemd) are" >&2
        echo "  required by the Nix tests. Install them (Debian: sudo apt-get install nix-bin systemd)." >&2
        exit 1
    fi
fi
