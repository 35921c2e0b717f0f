"""Start-up steps shared by the commands that need the configuration."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hermes_agent import home

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config


def warn(message: str) -> None:
    print(f"hermes: warning: {message}", file=sys.stderr)


def load_env() -> None:
    """Load HERMES_HOME/.env into the environment; report bad lines, keep going."""
    from hermes_agent.config.envfile import load_env_file

    for problem in load_env_file(home.env_path()):
        warn(problem)


def load_config(*, interpolate: bool = True) -> Config:
    """``.env`` first (``${VAR}`` may refer to it), then config.yaml; show warnings."""
    from hermes_agent.config.loader import load_config as _load

    load_env()
    config = _load(interpolate=interpolate)
    for message in config.warnings:
        warn(message)
    return config
