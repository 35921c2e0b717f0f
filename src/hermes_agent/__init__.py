"""hermes-agent: a personal AI agent for the terminal, chat platforms, editors and NixOS.

This module must stay import-free: `hermes version` and `hermes --help` import
it on every start, and the start-up budget is a few milliseconds.
"""

__version__ = "0.1.0"
