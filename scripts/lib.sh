# Shared by install.sh and scripts/test: find Python 3.11+, and a pinned uv.
# shellcheck shell=bash

UV_VERSION="0.13.8"

# Sets PYTHON to the absolute path of a Python >= 3.11 interpreter.
find_python() {
    local candidate
    for candidate in "${HERMES_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            PYTHON=$("$candidate" -c 'import sys; print(sys.executable)')
            return 0
        fi
    done
    echo "hermes: Python 3.11 or newer is needed (Debian: sudo apt-get install python3)" >&2
    exit 1
}

# Sets UV to this project's own pinned uv, installed once into .cache/uv.
# Using our pin (not whatever uv is on PATH) keeps uv.lock handling identical everywhere.
ensure_uv() {
    local venv=".cache/uv"
    if [ ! -x "$venv/bin/uv" ] || [ "$("$venv/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
        echo "==> installing uv $UV_VERSION into $venv" >&2
        rm -rf "$venv"
        if ! "$PYTHON" -m venv "$venv" >/dev/null 2>&1; then
            echo "hermes: '$PYTHON -m venv' failed; on Debian: sudo apt-get install python3-venv" >&2
            exit 1
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
    fi
    UV="$PWD/$venv/bin/uv"
    export UV_PYTHON_DOWNLOADS=never
}
