"""`hermes checkpoints`: list, compare, restore and prune the workspace's checkpoints.

The agent takes a checkpoint before the first change it makes to the workspace
in each turn (see :mod:`hermes_agent.checkpoints`); these commands are the way
back outside a chat. Checkpoints are numbered newest first (1 is the most
recent), as ``/rollback N`` counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_agent.cli.common import load_config
from hermes_agent.errors import UsageError

if TYPE_CHECKING:
    from hermes_agent.checkpoints import Store


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=cmd_list)
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="the workspace (default: terminal.cwd, else the current directory)",
    )
    sub = parser.add_subparsers(dest="checkpoints_command", metavar="ACTION", title="actions")
    listing = sub.add_parser("list", help="the checkpoints, newest first (default)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=cmd_list)
    diff = sub.add_parser("diff", help="what changed since checkpoint N (default 1, the newest)")
    diff.add_argument("which", nargs="?", default="1", metavar="N", help="number or id")
    diff.add_argument("--stat", action="store_true", help="only the files and line counts")
    diff.set_defaults(handler=cmd_diff)
    restore = sub.add_parser(
        "restore", help="put the workspace back as it was at checkpoint N (asks first)"
    )
    restore.add_argument("which", metavar="N", help="number (1 = newest) or id")
    restore.add_argument("-y", "--yes", action="store_true", help="do not ask")
    restore.add_argument(
        "--delete-new",
        action="store_true",
        help="also delete the files created since the checkpoint (they are kept otherwise)",
    )
    restore.add_argument("--dry-run", action="store_true", help="only show what would change")
    restore.set_defaults(handler=cmd_restore)
    prune = sub.add_parser("prune", help="remove old checkpoints (checkpoints.keep/max_age_days)")
    prune.add_argument("--keep", type=int, metavar="N", help="keep the newest N")
    prune.add_argument(
        "--max-age-days", type=float, metavar="D", help="remove those older than D days"
    )
    prune.set_defaults(handler=cmd_prune)
    for action in (listing, diff, restore, prune):  # Also accepted after the action.
        action.add_argument(
            "--workspace",
            metavar="DIR",
            default=argparse.SUPPRESS,
            help="the workspace (default: terminal.cwd, else the current directory)",
        )


def _store(args: argparse.Namespace) -> Store:
    from hermes_agent import checkpoints
    from hermes_agent.agent.factory import workspace

    config = load_config()
    if args.workspace:
        path = Path(args.workspace).expanduser()
        if not path.is_dir():
            raise UsageError(f"the workspace {args.workspace} is not a directory")
    else:
        path = workspace(config)
    return checkpoints.Store(path, checkpoints.Limits.from_config(config))


def cmd_list(args: argparse.Namespace) -> int:
    from hermes_agent import checkpoints

    store = _store(args)
    listed = store.listing()
    if getattr(args, "json", False):
        for number, c in enumerate(listed, 1):
            row = {
                "number": number,
                "id": c.commit,
                "created": c.created,
                "reason": c.reason,
                "session": c.session,
                "turn": c.turn,
                "skipped": list(c.skipped),
            }
            # ASCII: file names in the reason are the model's (C1 controls, bidi).
            print(json.dumps(row))
        return 0
    if not listed:
        print(f"no checkpoints of {store.workspace} yet")
        return 0
    print(f"checkpoints of {store.workspace} (newest first):")
    for number, c in enumerate(listed, 1):
        print(checkpoints.describe(number, c))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    store = _store(args)
    checkpoint = store.resolve(args.which)
    text = store.diff(checkpoint, stat_only=args.stat)
    sys.stdout.write(text if text else "no changes since that checkpoint\n")
    return 0


def _say(text: str) -> None:
    """Print; when the reader of stdout has left (`restore --yes | head`), go on without it.

    A BrokenPipeError here ended the command with exit 0 and the workspace not restored.
    """
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def cmd_restore(args: argparse.Namespace) -> int:
    from hermes_agent import checkpoints

    store = _store(args)
    checkpoint = store.resolve(args.which)
    plan = store.plan(checkpoint)
    _say(checkpoints.describe_plan(plan))
    if plan.empty or args.dry_run:
        return 0
    if args.delete_new and plan.new_files:
        _say(f"--delete-new: the {len(plan.new_files)} file(s) created since will be deleted")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not restored: run again with --yes to restore without a question")
        try:
            answer = input("Restore? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing was changed")
            return 1
    plan, result = store.restore(checkpoint, delete_new=args.delete_new)
    print(checkpoints.describe_result(plan, result))
    return 1 if result.problems else 0


def cmd_prune(args: argparse.Namespace) -> int:
    if args.keep is not None and args.keep < 1:
        raise UsageError("--keep must be at least 1 (the newest checkpoint always stays)")
    # `not x >= 0` also refuses nan, which compares false with every age and pruned nothing.
    if args.max_age_days is not None and not args.max_age_days >= 0:
        raise UsageError("--max-age-days must be a number of days, not negative")
    store = _store(args)
    removed = store.prune(args.keep, args.max_age_days)
    left = len(store.listing())
    print(f"removed {removed} checkpoint(s); {left} left")
    return 0
