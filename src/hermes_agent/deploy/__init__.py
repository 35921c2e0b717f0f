"""Deployment steps driven by a JSON spec: the Python half of ``services.hermes-agent``.

The NixOS module only declares options and renders them into a deployment
spec (format: :mod:`hermes_agent.deploy.spec`, ``docs/deployment-spec.md``);
`hermes deploy apply SPEC.json` applies it (:func:`apply_spec`) and `hermes
deploy identity SPEC.json` prints the container identity
(:func:`container_identity`). Keeping the logic here, not in shell strings
inside Nix, makes every step testable with pytest.

Imported only by the `deploy` command, never at start-up.
"""

from __future__ import annotations

from hermes_agent.deploy.apply import Change, Report, apply_spec
from hermes_agent.deploy.identity import CONTAINER_SCHEMA_VERSION, container_identity
from hermes_agent.deploy.spec import SPEC_VERSION, Spec, SpecError, load_spec, parse_spec

__all__ = [
    "CONTAINER_SCHEMA_VERSION",
    "SPEC_VERSION",
    "Change",
    "Report",
    "Spec",
    "SpecError",
    "apply_spec",
    "container_identity",
    "load_spec",
    "parse_spec",
]
