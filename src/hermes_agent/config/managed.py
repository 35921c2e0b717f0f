"""Managed mode: when NixOS (or another manager) owns the configuration.

An installation is managed when ``HERMES_MANAGED`` holds a true value
(``true``, ``1``, ``yes``, ``on``, ``nixos`` mean NixOS; any other value that is
not false names the manager, e.g. ``homebrew``) or when
``$HERMES_HOME/.managed`` exists. The marker's first line names the manager;
an empty marker (or one saying ``nixos``) means NixOS, because that is what
the NixOS activation writes and what its documentation promises. Only a
marker that names another manager changes the message; ``home-manager`` (what
the home-manager module's `hermes deploy apply` writes, and its unit's
``HERMES_MANAGED``) gets its own pointer to ``home-manager switch``.
Commands that would change what the manager owns refuse with one message
naming the manager and what to do instead, and exit with status 3 so that
scripts notice. Read-only commands keep working.
"""

from __future__ import annotations

import os

from hermes_agent import home
from hermes_agent.errors import EXIT_MANAGED, HermesError

ENV_VAR = "HERMES_MANAGED"
_TRUE = {"true", "1", "yes", "on", "nixos"}
_FALSE = {"false", "0", "no", "off"}
_UNNAMED = "an external package manager"


def manager() -> str | None:
    """Name of the manager that owns this installation, or None."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw and raw.lower() not in _FALSE:
        return "nixos" if raw.lower() in _TRUE else raw
    marker = home.managed_marker_path()
    try:
        content = marker.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return _UNNAMED  # It exists but cannot be read (or is a directory): still managed.
    name = content.strip().splitlines()[0].strip() if content.strip() else ""
    if not name or name.lower() in _TRUE:
        return "nixos"  # Empty: the NixOS activation's marker (see the module docstring).
    return name


def refusal(command: str, name: str) -> str:
    """The message shown when ``command`` is refused under manager ``name``."""
    if name == "nixos":
        return (
            f"`{command}` is disabled: this installation is managed by NixOS.\n"
            "Change services.hermes-agent.settings (secrets: services.hermes-agent."
            "environmentFiles) in configuration.nix, then run: sudo nixos-rebuild switch"
        )
    if name == "home-manager":
        return (
            f"`{command}` is disabled: this installation is managed by home-manager.\n"
            "Change services.hermes-agent.settings (secrets: services.hermes-agent."
            "environmentFiles) in your home-manager configuration, then run: home-manager switch"
        )
    return (
        f"`{command}` is disabled: this installation is managed by {name}.\n"
        f"Change the configuration through {name} instead."
    )


def require_unmanaged(command: str) -> None:
    """Raise a :class:`HermesError` (exit 3) when the installation is managed."""
    name = manager()
    if name is not None:
        raise HermesError(refusal(command, name), EXIT_MANAGED)
