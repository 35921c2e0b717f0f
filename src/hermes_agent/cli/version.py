"""`hermes version`: what is installed, and where its state lives.

Imports nothing beyond the home and managed-mode helpers: this is the command
people (and the Nix package check) run to see whether hermes works at all.
"""

from __future__ import annotations

import argparse
import os
import sys

from hermes_agent import __version__, home
from hermes_agent.config.managed import manager


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=run)


def install_method(paths: list[str] | None = None, prefix: str | None = None) -> str:
    """How hermes was installed: the manager's name when managed, else the installer.

    The installer is what the distribution's ``.dist-info/INSTALLER`` file
    names (``uv``, ``pip``: both write it), found on ``paths`` (default
    ``sys.path``); without one, a virtual environment that uv created
    (``uv = ...`` in its ``pyvenv.cfg``) says ``uv``. Plain file reads: no
    importlib.metadata, which would cost this command a noticeable part of
    its start.
    """
    managed = manager()
    if managed:
        return managed
    name = f"hermes_agent-{__version__}.dist-info"
    for entry in sys.path if paths is None else paths:
        try:
            with open(os.path.join(entry or ".", name, "INSTALLER"), encoding="utf-8") as f:
                installer = f.read(40).strip().lower()
        except OSError:
            continue
        if installer.replace("-", "").isalnum():
            return installer
    try:
        with open(os.path.join(prefix or sys.prefix, "pyvenv.cfg"), encoding="utf-8") as f:
            if any(line.split("=")[0].strip() == "uv" for line in f):
                return "uv"
    except OSError:
        pass
    return "pip"


def run(args: argparse.Namespace) -> int:
    python = sys.version.split()[0]
    print(f"hermes-agent {__version__}")
    print(f"python       {python} ({sys.executable})")
    print(f"HERMES_HOME  {home.hermes_home()}")
    print(f"install      {install_method()}")
    return 0
