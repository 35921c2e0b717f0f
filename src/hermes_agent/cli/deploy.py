"""`hermes deploy`: apply a NixOS deployment spec (used by services.hermes-agent).

``hermes deploy apply SPEC.json`` makes HERMES_HOME match the spec the
NixOS module rendered (config.yaml, .env, documents, auth.json, .managed,
the container identity) and prints what changed, never a secret value.
``hermes deploy identity SPEC.json`` prints the container identity hash.

Not refused in managed mode: this command is how the manager writes.
Exit status: 0 applied (changed or not), 1 a file could not be read or
written, 2 a bad spec or a broken input file; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hermes_agent import home


def configure(parser: argparse.ArgumentParser) -> None:
    fmt = parser.formatter_class
    sub = parser.add_subparsers(dest="deploy_command", metavar="ACTION", title="actions")

    def no_action(args: argparse.Namespace) -> int:
        parser.error("choose an action: apply or identity")

    parser.set_defaults(handler=no_action)

    apply = sub.add_parser(
        "apply",
        help="make HERMES_HOME match a deployment spec",
        description="Merge settings into config.yaml, rebuild .env, install documents, seed "
        "auth.json, write .managed and the container identity, as the spec says. "
        "Idempotent: a second run with the same spec changes nothing.",
        formatter_class=fmt,
    )
    apply.add_argument("spec", metavar="SPEC.json", type=Path, help="the JSON deployment spec")
    apply.add_argument(
        "--home",
        metavar="DIR",
        type=Path,
        help="the HERMES_HOME to apply to (default: $HERMES_HOME, else ~/.hermes)",
    )
    apply.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    apply.set_defaults(handler=cmd_apply)

    identity = sub.add_parser(
        "identity",
        help="print the container identity hash of a deployment spec",
        description="Print the hash of what the container is created from (schema version, "
        "image, extraVolumes, extraOptions, entrypoint); a new hash means a new container.",
        formatter_class=fmt,
    )
    identity.add_argument("spec", metavar="SPEC.json", type=Path, help="the JSON deployment spec")
    identity.set_defaults(handler=cmd_identity)


def cmd_apply(args: argparse.Namespace) -> int:
    from hermes_agent.cli.common import warn
    from hermes_agent.deploy import apply_spec, load_spec

    spec = load_spec(args.spec)
    target = args.home.expanduser().absolute() if args.home else home.hermes_home()
    report = apply_spec(spec, home=target)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        if report.changed:
            print(f"hermes deploy: applied {args.spec} to {target}")
            for change in report.changes:
                detail = f" ({change.detail})" if change.detail else ""
                print(f"  {change.action:<11} {change.path}{detail}")
        else:
            print(f"hermes deploy: {args.spec} already applied to {target}; nothing changed")
        if report.container_identity is not None:
            verdict = (
                "changed: recreate the container"
                if report.recreate_container
                else "unchanged: keep the container"
            )
            print(f"  container   identity {report.container_identity[:16]} {verdict}")
    for message in report.warnings:
        warn(message)
    return 0


def cmd_identity(args: argparse.Namespace) -> int:
    from hermes_agent.deploy import container_identity, load_spec

    print(container_identity(load_spec(args.spec)))
    return 0
