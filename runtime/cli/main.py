"""The ``warmstart`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import __version__
from ..config import FunctionConfig
from ..engine import Engine
from ..errors import WarmstartError
from ..harness.command import add_parser as add_bench_parser
from ..loop import run
from .dlq import add_parser as add_dlq_parser
from .ecs import add_parser as add_ecs_parser
from .functions import add_parsers as add_service_parsers
from .functions import read_payload
from .jobs import add_parser as add_jobs_parser


def _local(args: argparse.Namespace) -> int:
    """Register one function on an embedded engine and invoke it; prints payload and logs."""
    payload = read_payload(args.payload)

    async def main() -> int:
        status = 0
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(
                    name=args.name,
                    handler=args.handler,
                    code=args.code,
                    memory_mb=args.memory,
                    timeout_s=args.timeout,
                    start=args.start,
                )
            )
            for _ in range(args.repeat):
                result = await engine.invoke(args.name, payload)
                sys.stdout.write(result.payload.decode(errors="replace") + "\n")
                sys.stderr.write(result.log_tail)
                if result.function_error:
                    status = 1
        return status

    return run(main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart", description="AWS Lambda's invocation model on your own machine."
    )
    parser.add_argument("--version", action="version", version=f"warmstart {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser(
        "local",
        help="invoke a handler once (or --repeat N times) on an embedded engine",
        description="Register a handler on an embedded engine and invoke it, printing the result "
        "on stdout and the START/END/REPORT log on stderr. Exits 1 on a function error.",
    )
    local.add_argument(
        "payload", nargs="?", default="{}", help="JSON event, or - to read stdin (default {})"
    )
    local.add_argument("--handler", required=True, help="module.function, e.g. app.handler")
    local.add_argument("--code", required=True, help="directory or .zip with the function code")
    local.add_argument("--name", default="local", help="function name (default: local)")
    local.add_argument("--memory", type=int, default=128, help="memory_mb, 128-10240 (default 128)")
    local.add_argument("--timeout", type=float, default=3, help="timeout_s (default 3)")
    local.add_argument(
        "--start", choices=("fork", "spawn"), default="fork", help="cold start strategy"
    )
    local.add_argument(
        "--repeat", type=int, default=1, help="invoke N times: the first is cold, the rest warm"
    )
    local.set_defaults(func=_local)
    add_bench_parser(commands)
    add_service_parsers(commands)
    add_dlq_parser(commands)
    add_jobs_parser(commands)
    add_ecs_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Any = args.func
    try:
        return int(func(args))
    except WarmstartError as exc:
        print(f"warmstart: {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
