"""``warmstart bench``: options, their checks, and the run that prints and writes results."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from .. import configfile
from ..config import FunctionConfig
from ..loop import interruptible, run
from .baselines import NAMES as BASELINE_NAMES
from .load import LoadShape
from .runner import BenchPlan, run_bench
from .targets import EmbeddedTarget, EndpointTarget, HttpTarget, Target

T = TypeVar("T")

DEFAULT_DURATION_S = 5.0

DESCRIPTION = """\
Measure a function (or any HTTP URL) under load: throughput, latency percentiles
(p50/p90/p99/p99.9/max, from a histogram exact to 3 significant digits), cold and warm
starts, init durations, errors by type, throttles by reason and billed GB-seconds.
Baselines (--baseline) run the same payload with the same load shape in the same run,
and each ratio is printed beside warmstart's figure."""

EPILOG = """\
examples:
  # warm latency of a function on an embedded engine, against the raw unix-socket floor
  warmstart bench --handler app.handler --code examples/hello --requests 2000 --warmup 100 \\
      --baseline raw --baseline ppe
  # 8 closed-loop callers for 10 s, results as JSON and an HTML report
  warmstart bench --handler app.handler --code examples/hello -c 8 --duration 10 \\
      --json out.json --report out.html
  # an open loop at 500 requests/s (latency counted from each intended send time)
  warmstart bench --handler app.handler --code examples/hello --rate 500 --duration 5
  # every request a cold start, forked from the template or spawned
  warmstart bench --handler app.handler --code examples/hello --cold --start spawn --requests 50
  # a function declared in a config file, with its pool settings
  warmstart bench --config warmstart.toml --function hello --payload-size 4096
  # a function on a running warmstart service, or any URL
  warmstart bench --endpoint http://127.0.0.1:9000 --function hello -c 16 --requests 5000
  warmstart bench --url http://127.0.0.1:8080/health --method GET --rate 1000 --duration 30

The exit status is 2 on a usage error and 1 when --cold saw a warm sample."""


class UsageError(ValueError):
    """Options that do not make sense together; reported as argparse reports its own."""


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be at least {low}")
        return value

    return parse


_positive_int = _int_at_least(1)
_count = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number above 0")
    return value


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``warmstart`` subcommands."""
    p: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="benchmark a function or URL under load, with baselines in the same run",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_options(p.add_argument_group("target (one of --handler, --config, --endpoint, --url)"))
    _load_options(p.add_argument_group("load"))
    _payload_options(p.add_argument_group("payload (default {})").add_mutually_exclusive_group())
    _cold_options(p.add_argument_group("environments (embedded targets)"))
    _output_options(p.add_argument_group("results"))
    p.set_defaults(func=run_command, bench_parser=p)
    return p


def _target_options(g: Any) -> None:
    g.add_argument("--handler", help="module.function of a function on an embedded engine")
    g.add_argument("--code", help="with --handler: the function's directory or .zip")
    g.add_argument("--name", help="with --handler: the function's name (default: bench)")
    g.add_argument("--memory", type=int, help="with --handler: memory_mb (default 128)")
    g.add_argument("--timeout", type=float, help="with --handler: timeout_s (default 3)")
    g.add_argument("--config", metavar="FILE", help="a TOML config file ([pool], [functions.*])")
    g.add_argument("--function", metavar="NAME", help="with --config or --endpoint: the function")
    g.add_argument("--endpoint", metavar="URL", help="a warmstart service's base URL")
    g.add_argument("--url", help="any HTTP URL (the payload is POSTed unless --method GET)")
    g.add_argument("--method", choices=("POST", "GET"), help="with --url (default POST)")


def _load_options(g: Any) -> None:
    g.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        help="closed loop: callers (default 1); open loop: requests in flight at most "
        "(default 1024)",
    )
    g.add_argument(
        "--rate",
        type=_positive_float,
        help="open loop: requests per second, each latency measured from its intended send time",
    )
    bound = g.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help=f"measure for this long (the default, {DEFAULT_DURATION_S:g} s)",
    )
    bound.add_argument("--requests", type=_positive_int, metavar="N", help="measure N requests")
    g.add_argument(
        "--warmup", type=_count, default=0, metavar="N", help="N requests first, not recorded"
    )


def _payload_options(g: Any) -> None:
    g.add_argument("--payload", metavar="JSON", help="the event, as JSON text")
    g.add_argument("--payload-file", metavar="FILE", help="the event, read from a JSON file")
    g.add_argument(
        "--payload-size", type=_count, metavar="BYTES", help="a generated JSON event this large"
    )


def _cold_options(g: Any) -> None:
    g.add_argument(
        "--cold",
        action="store_true",
        help="every request gets a new environment (max_uses=1): measures cold starts",
    )
    g.add_argument("--start", choices=("fork", "spawn"), help="cold start strategy")
    g.add_argument(
        "--backend",
        choices=("process", "container"),
        help="process (default) or container (needs --image, or an image in the config file)",
    )
    g.add_argument("--image", help="with --backend container: the function's container image")


def _output_options(g: Any) -> None:
    g.add_argument(
        "--baseline",
        action="append",
        choices=BASELINE_NAMES,
        default=[],
        help="also run the same load through: raw (unix-socket round trip, the floor), ppe "
        "(ProcessPoolExecutor), mp (multiprocessing.Pool); repeatable",
    )
    g.add_argument(
        "--baseline-workers",
        type=_positive_int,
        metavar="N",
        help="worker processes of each baseline (default: the concurrency, at most the CPU "
        "count and the function's reserved concurrency)",
    )
    g.add_argument("--json", metavar="FILE", help="write every result as JSON")
    g.add_argument("--report", metavar="FILE", help="write a self-contained HTML report")
    g.add_argument("--quiet", action="store_true", help="no live progress display on stderr")


# -- from options to a plan -------------------------------------------------------------------


def make_payload(size: int) -> bytes:
    """A valid JSON document of exactly ``size`` bytes (``{}`` when ``size`` is below 12)."""
    skeleton = b'{"data":""}'
    if size <= len(skeleton):
        return b"{}"
    return b'{"data":"' + b"x" * (size - len(skeleton)) + b'"}'


def payload_from(args: argparse.Namespace) -> bytes:
    if args.payload_size is not None:
        return make_payload(args.payload_size)
    if args.payload_file is not None:
        try:
            with open(args.payload_file, "rb") as f:
                body = f.read()
        except OSError as exc:
            raise UsageError(f"--payload-file {args.payload_file}: {exc.strerror}") from None
        return _json_checked(body, f"--payload-file {args.payload_file}")
    if args.payload is not None:
        return _json_checked(args.payload.encode(), "--payload")
    return b"{}"


def _json_checked(body: bytes, what: str) -> bytes:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{what}: not valid JSON ({exc})") from None
    return body


def shape_from(args: argparse.Namespace) -> LoadShape:
    duration = args.duration
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION_S
    return LoadShape(args.concurrency, args.rate, args.requests, duration, args.warmup)


def _chosen_target(args: argparse.Namespace) -> str:
    chosen = [
        flag
        for flag, value in (
            ("--handler", args.handler),
            ("--config", args.config),
            ("--endpoint", args.endpoint),
            ("--url", args.url),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        found = ", ".join(chosen) if chosen else "none"
        raise UsageError(f"choose one target: --handler, --config, --endpoint or --url ({found})")
    return chosen[0]


def _only_with(args: argparse.Namespace, kind: str, allowed: dict[str, tuple[str, ...]]) -> None:
    for option, kinds in allowed.items():
        if getattr(args, option.lstrip("-").replace("-", "_")) not in (None, False) and (
            kind not in kinds
        ):
            raise UsageError(f"{option} goes with {' or '.join(kinds)}, not {kind}")


_ALLOWED = {
    "--code": ("--handler",),
    "--name": ("--handler",),
    "--memory": ("--handler",),
    "--timeout": ("--handler",),
    "--function": ("--config", "--endpoint"),
    "--method": ("--url",),
    "--cold": ("--handler", "--config"),
    "--start": ("--handler", "--config"),
    "--backend": ("--handler", "--config"),
    "--image": ("--handler", "--config"),
}


def target_from(args: argparse.Namespace, shape: LoadShape) -> Target:
    kind = _chosen_target(args)
    _only_with(args, kind, _ALLOWED)
    if kind == "--handler":
        return _handler_target(args)
    if kind == "--config":
        return _config_target(args)
    if args.function is None and kind == "--endpoint":
        raise UsageError("--endpoint needs --function NAME")
    if kind == "--endpoint":
        return EndpointTarget(args.endpoint, args.function, shape.in_flight)
    return HttpTarget(args.url, shape.in_flight, args.method or "POST")


def _handler_target(args: argparse.Namespace) -> EmbeddedTarget:
    if args.code is None:
        raise UsageError("--handler needs --code DIR")
    fields: dict[str, Any] = {
        "name": args.name or "bench",
        "handler": args.handler,
        "code": args.code,
    }
    for option, field in (
        ("memory", "memory_mb"),
        ("timeout", "timeout_s"),
        ("start", "start"),
        ("backend", "backend"),
        ("image", "image"),
    ):
        if getattr(args, option) is not None:
            fields[field] = getattr(args, option)
    return EmbeddedTarget(FunctionConfig(**fields), None, cold=args.cold)


def _config_target(args: argparse.Namespace) -> EmbeddedTarget:
    if args.function is None:
        raise UsageError("--config needs --function NAME")
    config = configfile.load(args.config)
    function = config.functions.get(args.function)
    if function is None:
        names = ", ".join(sorted(config.functions)) or "none"
        raise UsageError(f"--function {args.function}: not in {args.config} (functions: {names})")
    overrides = {
        field: getattr(args, field)
        for field in ("start", "backend", "image")
        if getattr(args, field) is not None
    }
    if overrides:
        function = function.replace(**overrides)
    return EmbeddedTarget(function, config.pool, cold=args.cold)


def baseline_workers(args: argparse.Namespace, shape: LoadShape, target: Target) -> int:
    chosen: int | None = args.baseline_workers  # argparse: a whole number of at least 1
    if chosen is not None:
        return chosen
    workers = min(shape.in_flight, os.cpu_count() or 1)
    if isinstance(target, EmbeddedTarget) and target.config.reserved_concurrency:
        workers = min(workers, target.config.reserved_concurrency)
    return max(1, workers)


# -- running ----------------------------------------------------------------------------------


def plan_from(args: argparse.Namespace) -> BenchPlan:
    """The benchmark the options describe; ``UsageError`` when they do not fit together."""
    payload = payload_from(args)
    shape = shape_from(args)
    target = target_from(args, shape)
    workers = baseline_workers(args, shape, target)
    return BenchPlan(target, shape, payload, tuple(args.baseline), workers)


def run_command(args: argparse.Namespace) -> int:
    """Run the benchmark the options describe; print the summary; write --json/--report."""
    from . import report_html, summary

    try:
        plan = plan_from(args)
    except UsageError as exc:
        args.bench_parser.error(str(exc))
    try:
        if args.quiet or not sys.stderr.isatty():
            doc = run(interruptible(run_bench(plan)))
        else:
            from .progress import LiveProgress

            with LiveProgress() as progress:
                doc = run(interruptible(run_bench(plan, progress)))
    except asyncio.CancelledError:
        sys.stderr.write("warmstart bench: interrupted\n")
        return 130
    sys.stdout.write(summary.render(doc))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(report_html.render(doc))
    check = doc["cold_check"]
    return 1 if check is not None and not check["ok"] else 0
