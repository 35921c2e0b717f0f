"""Which workspace documents may steer the agent: ``SOUL.md`` and ``USER.md`` by digest.

The system prompt reads ``SOUL.md`` and ``USER.md`` from the workspace before
HERMES_HOME's. The workspace is writable by the agent's own commands (the
sandbox must let it build and edit the project), so a hostile model could
write standing instructions there that every later session would obey. The
kernel cannot tell that write from an ordinary one; a digest can tell the
content the user approved from content nobody approved.

A workspace document enters a prompt only when its SHA-256 is trusted:

- recorded in ``HERMES_HOME/trusted-documents.json`` (under HERMES_HOME, so
  nothing the agent runs can add to it) because the user said yes: when
  ``hermes chat`` starts and finds it new or changed, or when the file tools
  asked before writing it;
- or installed by the NixOS module (``hermes deploy apply`` records each
  document's digest in ``.nix-managed-keys.json``).

A document nobody approved is left out of the prompt, and the front end says
so in one line (the HERMES_HOME copy, if there is one, is used instead).
HERMES_HOME's own ``SOUL.md``/``USER.md`` are always trusted: only the user,
or the file tools after asking, can write there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from hermes_agent import home

DOCUMENTS = ("SOUL.md", "USER.md")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _recorded() -> dict[str, list[str]]:
    try:
        data = json.loads(home.trusted_documents_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [str(d) for d in v] for k, v in data.items() if isinstance(v, list)}


def _deployed() -> dict[str, str]:
    try:
        data = json.loads(home.path(home.NIX_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    documents = data.get("documents") if isinstance(data, dict) else None
    if not isinstance(documents, dict):
        return {}
    return {os.path.realpath(str(k)): str(v) for k, v in documents.items()}


def trusted(path: Path) -> bool:
    """Whether the document at ``path``, as it is now, may enter a prompt."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if _in_hermes_home(path):
        return True
    value = digest(data)
    key = _key(path)
    return value in _recorded().get(key, ()) or _deployed().get(key) == value


def _in_hermes_home(path: Path) -> bool:
    root = os.path.realpath(home.hermes_home())
    return os.path.realpath(path).startswith(root.rstrip("/") + "/")


def trust(path: Path, data: bytes | None = None) -> None:
    """Record that the user approved ``path`` with this content (its current one by default)."""
    from hermes_agent.fsutil import atomic_write
    from hermes_agent.home_lock import home_lock

    if data is None:
        data = path.read_bytes()
    value = digest(data)
    home.ensure_home()
    with home_lock("trust a workspace document"):
        records = _recorded()
        kept = [d for d in records.get(_key(path), []) if d != value][-7:]
        records[_key(path)] = [*kept, value]
        atomic_write(
            home.trusted_documents_path(),
            json.dumps(records, indent=2, sort_keys=True) + "\n",
            mode=0o600,
        )


def untrusted(cwd: Path) -> list[Path]:
    """The workspace documents that exist but may not enter a prompt as they are."""
    found = []
    for name in DOCUMENTS:
        candidate = cwd / name
        with contextlib.suppress(OSError):
            if candidate.is_file() and not trusted(candidate):
                found.append(candidate)
    return found
