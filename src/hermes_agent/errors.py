"""Errors that end a command with a clear message instead of a traceback.

The CLI catches :class:`HermesError`, prints ``hermes: <message>`` on stderr
and exits with ``exit_code``. The codes are part of the interface (scripts and
the NixOS module check them), so they are named here once:

- ``EXIT_FAILURE`` (1): the command could not do its work (unwritable path...).
- ``EXIT_USAGE`` (2): bad input: a broken config file, an invalid value, a
  wrong argument (argparse uses 2 as well).
- ``EXIT_MANAGED`` (3): refused because the installation is managed by NixOS
  or another package manager.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MANAGED = 3


class HermesError(Exception):
    """A failure the user can act on; ``str(self)`` is the whole message."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(HermesError):
    """Bad input from the user: a wrong argument or value."""

    exit_code = EXIT_USAGE


class ConfigError(HermesError):
    """config.yaml (or a value destined for it) is invalid.

    ``problems`` holds one line per problem, each already prefixed with its
    location (``file:line: key: message``) so all of them can be shown at once.
    """

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
