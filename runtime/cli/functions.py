"""``warmstart serve``, ``invoke``, ``functions list|create|delete`` and ``logs``.

``invoke``, ``functions`` and ``logs`` talk to a service: the one at ``--endpoint URL``, or,
without it, an embedded one started for the command on a free loopback port from ``--config``
(then gone when the command ends, so its functions and logs last only that long).  ``dlq`` is
in :mod:`runtime.cli.dlq`, what the commands share in :mod:`runtime.cli.common`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from ..configfile import ConfigFile, StoreConfig
from ..loop import run
from .common import (
    DEFAULT_CONFIG,
    columns,
    command_parser,
    connect,
    load_config,
    run_connected,
)

if TYPE_CHECKING:  # aiohttp is imported only by the commands that talk to a service
    from .client import Invocation, ServiceClient

SERVE_EPILOG = """\
examples:
  warmstart serve --config examples/warmstart.toml
  warmstart serve --config warmstart.toml --port 0          # any free port (printed)
  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws lambda list-functions \\
      --endpoint-url http://127.0.0.1:9000 --region us-east-1

Without --config, ./warmstart.toml is read when it exists. SIGTERM or Ctrl-C stops accepting
requests, lets in-flight invocations finish ([service] shutdown_timeout_s, 30 s by default),
stops every environment and exits 0."""

INVOKE_EPILOG = """\
examples:
  warmstart invoke hello '{"name": "warmstart"}' --endpoint http://127.0.0.1:9000
  echo '{"n": 1}' | warmstart invoke hello - --tail --config examples/warmstart.toml
  warmstart invoke hello --type Event --endpoint http://127.0.0.1:9000

The payload goes to stdout, the REPORT line (the whole log tail with --tail) to stderr.
Exit status: 0, 1 when the function failed (X-Amz-Function-Error), 2 when the call was refused."""

FUNCTIONS_EPILOG = """\
examples:
  warmstart functions list --endpoint http://127.0.0.1:9000
  warmstart functions create shout --handler app.handler --code ./shout --memory 256 \\
      --env GREETING=hey --endpoint http://127.0.0.1:9000
  warmstart functions create shout --handler app.handler --code shout.zip --endpoint URL
  warmstart functions delete shout --endpoint http://127.0.0.1:9000

Without --endpoint the commands run against an engine built from --config for this command
only: `create` then checks that the function registers, and nothing is kept."""

LOGS_EPILOG = """\
examples:
  warmstart logs hello --endpoint http://127.0.0.1:9000
  warmstart logs hello --follow --endpoint http://127.0.0.1:9000     # Ctrl-C to stop

Logs live in the service that ran the invocations: this is mostly useful with --endpoint (an
embedded engine only has the logs of what ran within the same command, which is nothing)."""


# -- parsers --------------------------------------------------------------------------------------


def add_parsers(commands: Any) -> None:
    """Add ``serve``, ``invoke``, ``functions`` and ``logs`` to the ``warmstart`` subcommands."""
    _serve_parser(commands)
    _invoke_parser(commands)
    _functions_parser(commands)
    _logs_parser(commands)
    _nodes_parser(commands)


def _target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="a running warmstart service (http://127.0.0.1:9000); requests are SigV4-signed "
        "when WARMSTART_ACCESS_KEY_ID and WARMSTART_SECRET_ACCESS_KEY are set",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="without --endpoint: the TOML config of an embedded engine "
        f"(default ./{DEFAULT_CONFIG} when it exists)",
    )


def _serve_parser(commands: Any) -> None:
    p = command_parser(
        commands, "serve", "run the invoker service: Lambda's API over HTTP", SERVE_EPILOG
    )
    p.add_argument("--config", metavar="FILE", help="TOML: [pool], [functions.*], [service], …")
    p.add_argument("--host", help="listen address (default: [service] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: [service] port, 9000)")
    p.add_argument(
        "--store",
        metavar="URL",
        help="a Redis shared with other nodes, redis://HOST:PORT/DB (default: $WARMSTART_STORE, "
        "else [store] url, else the SQLite file in [batch] data_dir)",
    )
    p.add_argument(
        "--node-id",
        help="this node's id in the cluster (default: $WARMSTART_NODE_ID, else [store] node_id, "
        "else host/pid/start time)",
    )
    p.set_defaults(func=serve_command)


def _invoke_parser(commands: Any) -> None:
    p = command_parser(commands, "invoke", "invoke a function and print its result", INVOKE_EPILOG)
    p.add_argument("name", help="the function's name")
    p.add_argument("payload", nargs="?", default="{}", help="JSON event, or - for stdin ({})")
    p.add_argument(
        "--type",
        choices=("RequestResponse", "Event", "DryRun"),
        default="RequestResponse",
        help="the invocation type (default RequestResponse)",
    )
    p.add_argument("--tail", action="store_true", help="print the whole log tail, not just REPORT")
    _target_options(p)
    p.set_defaults(func=invoke_command)


def _functions_parser(commands: Any) -> None:
    p = command_parser(commands, "functions", "list, create or delete functions", FUNCTIONS_EPILOG)
    actions = p.add_subparsers(dest="action", required=True)
    listing = command_parser(actions, "list", "list functions", FUNCTIONS_EPILOG)
    listing.add_argument("--json", action="store_true", help="print Lambda's JSON")
    _target_options(listing)
    listing.set_defaults(func=functions_list_command)
    create = command_parser(
        actions, "create", "create a function from a directory or a .zip", FUNCTIONS_EPILOG
    )
    create.add_argument("name", help="the function's name")
    create.add_argument("--handler", required=True, help="module.function, e.g. app.handler")
    create.add_argument("--code", required=True, help="a directory (zipped for upload) or a .zip")
    create.add_argument("--memory", type=int, help="MemorySize in MB, 128-10240 (default 128)")
    create.add_argument("--timeout", type=int, help="Timeout in seconds (default 3)")
    create.add_argument(
        "--runtime",
        help="python3.9 to python3.14, nodejs16.x to nodejs24.x (index.handler in index.js or "
        "index.mjs, run by the node on the service's PATH), or provided.al2023 / provided.al2 / "
        "provided (the zip's bootstrap is the runtime; default: the service's interpreter)",
    )
    create.add_argument("--description", help="Description")
    create.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="a variable; repeatable"
    )
    _target_options(create)
    create.set_defaults(func=functions_create_command)
    delete = command_parser(actions, "delete", "delete a function", FUNCTIONS_EPILOG)
    delete.add_argument("name", help="the function's name")
    _target_options(delete)
    delete.set_defaults(func=functions_delete_command)


def _logs_parser(commands: Any) -> None:
    p = command_parser(commands, "logs", "print a function's recent log", LOGS_EPILOG)
    p.add_argument("name", help="the function's name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new invocations")
    _target_options(p)
    p.set_defaults(func=logs_command)


NODES_EPILOG = """\
examples:
  warmstart nodes --endpoint http://127.0.0.1:9000
  warmstart nodes --json --endpoint http://127.0.0.1:9000

The nodes sharing the endpoint's store ([store] url), as of their last heartbeat: a node that
stopped beating for [store] lease_s is no longer listed, and its work is taken over."""


def _nodes_parser(commands: Any) -> None:
    p = command_parser(commands, "nodes", "list the live nodes of a cluster", NODES_EPILOG)
    p.add_argument("--json", action="store_true", help="print the service's JSON")
    _target_options(p)
    p.set_defaults(func=nodes_command)


# -- running ------------------------------------------------------------------------------------


def serve_command(args: argparse.Namespace) -> int:
    from ..service.app import serve

    config = with_store(load_config(args.config), args.store, args.node_id)
    return run(serve(config, args.host, args.port))


def with_store(config: ConfigFile, url: str | None, node_id: str | None) -> ConfigFile:
    """``config`` with the store the command line or the environment names:
    ``--store`` / ``$WARMSTART_STORE``, ``--node-id`` / ``$WARMSTART_NODE_ID`` and
    ``$WARMSTART_ADVERTISE_URL`` win over ``[store]``."""
    changes = {
        "url": url or os.environ.get("WARMSTART_STORE") or None,
        "node_id": node_id or os.environ.get("WARMSTART_NODE_ID") or None,
        "advertise_url": os.environ.get("WARMSTART_ADVERTISE_URL") or None,
    }
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        return config
    store = msgspec.convert({**msgspec.structs.asdict(config.store), **given}, StoreConfig)
    return dataclasses.replace(config, store=store)


def _run(
    args: argparse.Namespace, work: Callable[[ServiceClient], Coroutine[Any, Any, int]]
) -> int:
    return run_connected(connect, args, work)


def read_payload(arg: str) -> bytes:
    """The payload argument's bytes; ``-`` reads them from stdin."""
    return sys.stdin.buffer.read() if arg == "-" else arg.encode()


def invoke_command(args: argparse.Namespace) -> int:
    payload = read_payload(args.payload)

    async def work(client: ServiceClient) -> int:
        result = await client.invoke(args.name, payload, args.type)
        _print_invocation(result, args.tail)
        return 1 if result.function_error else 0

    return _run(args, work)


def _print_invocation(result: Invocation, tail: bool) -> None:
    if result.payload:
        sys.stdout.buffer.write(result.payload + b"\n")
        sys.stdout.flush()
    if result.status == 202:
        sys.stderr.write(f"warmstart: accepted (202), request {result.request_id}\n")
    elif result.status == 204:
        sys.stderr.write("warmstart: dry run: the call would be accepted (204)\n")
    elif tail:
        sys.stderr.write(result.log_tail)
    else:
        reports = [line for line in result.log_tail.splitlines() if line.startswith("REPORT ")]
        if reports:
            sys.stderr.write(reports[-1] + "\n")


def functions_list_command(args: argparse.Namespace) -> int:
    async def work(client: ServiceClient) -> int:
        functions = await client.list_functions()
        if args.json:
            sys.stdout.buffer.write(
                orjson.dumps({"Functions": functions}, option=orjson.OPT_INDENT_2)
            )
            sys.stdout.write("\n")
        else:
            sys.stdout.write(render_table(functions))
        return 0

    return _run(args, work)


def render_table(functions: list[dict[str, Any]]) -> str:
    """One line per function: name, runtime, handler, memory, timeout, code size, modified."""
    header = ("NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "CODE", "LAST MODIFIED")
    rows = [header] + [
        (
            f["FunctionName"],
            f.get("Runtime", ""),
            f.get("Handler", ""),
            f"{f.get('MemorySize', '')} MB",
            f"{f.get('Timeout', '')} s",
            f"{f.get('CodeSize', 0)} B",
            f.get("LastModified", ""),
        )
        for f in functions
    ]
    return columns(rows)


def _create_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for option, member in (
        ("memory", "MemorySize"),
        ("timeout", "Timeout"),
        ("runtime", "Runtime"),
        ("description", "Description"),
    ):
        if getattr(args, option) is not None:
            settings[member] = getattr(args, option)
    if args.env:
        variables = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"warmstart functions create: --env {item!r}: use KEY=VALUE")
            variables[key] = value
        settings["Environment"] = {"Variables": variables}
    return settings


def functions_create_command(args: argparse.Namespace) -> int:
    settings = _create_settings(args)
    if not os.path.exists(args.code):
        raise SystemExit(
            f"warmstart functions create: --code {args.code}: no such file or directory"
        )
    from .client import code_bytes

    code = code_bytes(args.code)

    async def work(client: ServiceClient) -> int:
        created = await client.create_function(args.name, args.handler, code, **settings)
        sys.stdout.buffer.write(orjson.dumps(created, option=orjson.OPT_INDENT_2) + b"\n")
        if not args.endpoint:
            sys.stderr.write(
                "warmstart: embedded engine: the function registered, and is gone with this "
                "command; use --endpoint to create it on a running service\n"
            )
        return 0

    return _run(args, work)


def functions_delete_command(args: argparse.Namespace) -> int:
    async def work(client: ServiceClient) -> int:
        await client.delete_function(args.name)
        sys.stderr.write(f"warmstart: deleted {args.name}\n")
        return 0

    return _run(args, work)


def nodes_command(args: argparse.Namespace) -> int:
    async def work(client: ServiceClient) -> int:
        found = await client.json("GET", "/warmstart/nodes")
        if args.json:
            sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        header = ("NODE", "URL", "FREE", "BUSY", "WAITING", "WARM", "EVENTS", "JOBS", "SEEN")
        rows: list[tuple[Any, ...]] = [header, *map(_node_row, found["Nodes"])]
        sys.stdout.write(columns(rows))
        return 0

    return _run(args, work)


def _node_row(node: dict[str, Any]) -> tuple[Any, ...]:
    return (
        node["NodeId"] + (" *" if node["Self"] else ""),
        node["Url"],
        node["FreeEnvironments"],
        node["BusyEnvironments"],
        node["WaitingInvocations"],
        sum(node["IdleWarm"].values()),
        node["AsyncInFlight"],
        node["BatchRunning"],
        f"{node['LastSeenSecondsAgo']:.1f}s ago",
    )


def logs_command(args: argparse.Namespace) -> int:
    async def work(client: ServiceClient) -> int:
        if not args.follow:
            sys.stdout.write(await client.logs(args.name))
            return 0
        async for text in client.follow_logs(args.name):
            sys.stdout.write(text)
            sys.stdout.flush()
        return 0

    return _run(args, work)
