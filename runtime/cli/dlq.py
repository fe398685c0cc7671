"""``warmstart dlq list|redrive``: the dead-letter list of async invocations.

The commands read and change the durable store in the data directory themselves (SQLite is
shared safely with a running service, whose dispatcher finds redriven events within a second)::

    --data-dir | [batch] data_dir ──► store_path ──► the event store ──► dlq_list / dlq_redrive
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from .common import DEFAULT_CONFIG, columns, command_parser, store_path

if TYPE_CHECKING:
    from ..asyncinvoke.model import AsyncEvent

DLQ_EPILOG = """\
examples:
  warmstart dlq list
  warmstart dlq list --function hello --json
  warmstart dlq redrive 0c9e6f1e-0d6b-4f43-9d1b-8f7e1c2a3b4c
  warmstart dlq redrive --all --data-dir /var/lib/warmstart

The dead-letter list holds async invocations that ran out of retries or of age and had no
OnFailure destination. Redriven events start over (retries and age reset) and run on the
service using that data directory. The data directory is --data-dir, else --config's (or
./warmstart.toml's) [batch] data_dir, else $WARMSTART_DATA_DIR, else ~/.local/share/warmstart."""


def add_parser(commands: Any) -> None:
    """Add ``dlq list`` and ``dlq redrive`` to the ``warmstart`` subcommands."""
    p = command_parser(
        commands, "dlq", "list or redrive dead-lettered async invocations", DLQ_EPILOG
    )
    actions = p.add_subparsers(dest="action", required=True)
    listing = command_parser(actions, "list", "list dead-lettered events, oldest first", DLQ_EPILOG)
    listing.add_argument("--function", help="only this function's events")
    listing.add_argument("--limit", type=int, default=100, help="at most N events (default 100)")
    listing.add_argument("--json", action="store_true", help="print JSON, payloads included")
    _store_options(listing)
    listing.set_defaults(func=dlq_list_command)
    redrive = command_parser(actions, "redrive", "run dead-lettered events again", DLQ_EPILOG)
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID", help="event ids to redrive")
    which.add_argument("--all", action="store_true", help="every dead-lettered event")
    _store_options(redrive)
    redrive.set_defaults(func=dlq_redrive_command)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="the directory of batch.sqlite3")
    parser.add_argument(
        "--config", metavar="FILE", help=f"read [batch] data_dir (default ./{DEFAULT_CONFIG})"
    )


def dlq_list_command(args: argparse.Namespace) -> int:
    from ..asyncinvoke.store import SqliteEventStore

    path = store_path(args)
    if not path.exists():
        sys.stderr.write(f"warmstart: no store at {path}: nothing is dead-lettered\n")
        events = []
    else:
        with SqliteEventStore(path) as store:
            events = store.dlq_list(args.function, args.limit)
    if args.json:
        docs = [_dead_doc(event) for event in events]
        sys.stdout.buffer.write(orjson.dumps(docs, option=orjson.OPT_INDENT_2) + b"\n")
    elif events:
        sys.stdout.write(render_dead(events))
    return 0


def _dead_doc(event: AsyncEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "function": event.function,
        "condition": event.condition,
        "error": event.error,
        "invocations": event.invocations,
        "retries": event.retries,
        "createdAt": _iso(event.created_at),
        "deadAt": _iso(event.next_attempt_at),
        "payload": orjson.Fragment(event.payload),
    }


def render_dead(events: list[AsyncEvent]) -> str:
    """One line per event: id, function, condition, tries, when it died, the last error."""
    header = ("ID", "FUNCTION", "CONDITION", "TRIES", "DEAD AT", "ERROR")
    rows = [header] + [
        (
            e.id,
            e.function,
            e.condition or "",
            str(e.invocations),
            _iso(e.next_attempt_at),
            _short(e.error or ""),
        )
        for e in events
    ]
    return columns(rows)


def dlq_redrive_command(args: argparse.Namespace) -> int:
    from ..asyncinvoke.store import SqliteEventStore

    path = store_path(args)
    if not path.exists():
        sys.stderr.write(f"warmstart: no store at {path}\n")
        return 2
    with SqliteEventStore(path) as store:
        count = store.dlq_redrive(None if args.all else args.ids, time.time())
    sys.stderr.write(f"warmstart: redriven {count} event(s)\n")
    if not args.all and count < len(set(args.ids)):
        sys.stderr.write("warmstart: some ids are not in the dead-letter list\n")
        return 1
    return 0


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
