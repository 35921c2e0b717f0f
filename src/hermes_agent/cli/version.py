"""`hermes version`: what is installed, and where its state lives.

Imports nothing beyond the home and managed-mode helpers: this is the command
people (and the Nix package check) run to see whether hermes works at all.
"""

from __future__ import annotations

import argparse
import sys

from hermes_agent import __version__, home
from hermes_agent.config.managed import manager


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=run)


def install_method() -> str:
    """``pip`` for an ordinary install; the manager's name when managed."""
    return manager() or "pip"


def run(args: argparse.Namespace) -> int:
    python = sys.version.split()[0]
    print(f"hermes-agent {__version__}")
    print(f"python       {python} ({sys.executable})")
    print(f"HERMES_HOME  {home.hermes_home()}")
    print(f"install      {install_method()}")
    return 0
