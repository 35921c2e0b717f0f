"""Where the terminal tool finds the approval gate: :mod:`hermes_agent.safety.gate`.

The classifier and the gate moved into the :mod:`hermes_agent.safety` package
(words, parser adapter, command table, decoders, gate); this module only
re-exports the gate for importers not yet updated.
"""

from __future__ import annotations

from hermes_agent.safety.gate import (
    ALWAYS_KEY,
    CHOICES,
    MODES,
    Finding,
    Level,
    Verdict,
    allow_matches,
    approve_command,
    classify,
)

__all__ = [
    "ALWAYS_KEY",
    "CHOICES",
    "MODES",
    "Finding",
    "Level",
    "Verdict",
    "allow_matches",
    "approve_command",
    "classify",
]
