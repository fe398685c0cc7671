"""``warmstart ecs register-task-definition FILE``: a task definition, as written, to a service.

::

    FILE ── read, checked to be one JSON object ──▶ POST /  X-Amz-Target: …RegisterTaskDefinition
         (the bytes sent unchanged)                  ──▶ a service's ECS API ──▶ its answer, printed

botocore checks a request's types before sending it, so boto3 and the AWS CLI refuse a task
definition with ECS's string numbers (``"memory": "100"``) that ECS itself accepts. This
command sends the file's JSON as it is, and the service checks it as ECS does.

Exit status: 0 registered; 1 refused by the service (``warmstart: ClientException: …``); 2 when
the file cannot be read or is not a JSON object, or the service cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import orjson

from .common import command_parser, connect, run_connected

if TYPE_CHECKING:  # aiohttp and the ECS model are imported only when a request is sent
    from .client import ServiceClient

ECS_EPILOG = """\
examples:
  warmstart ecs register-task-definition web.json --endpoint http://127.0.0.1:9000
  warmstart ecs register-task-definition web.json --config warmstart.toml   # only checks it
  cat web.json | warmstart ecs register-task-definition - --endpoint http://127.0.0.1:9000

FILE holds RegisterTaskDefinition's request, the JSON that `aws ecs register-task-definition
--cli-input-json file://FILE` reads ({"family": ..., "containerDefinitions": [...], ...}); it is
sent unchanged, string numbers included. The service's answer is printed as JSON.
Without --endpoint the definition goes to a service built from --config for this command
only, which checks that it registers and keeps nothing.
Exit status: 0 registered, 1 refused by the service, 2 for an unreadable or malformed FILE
or an endpoint that does not answer."""


class BadFile(Exception):
    """FILE cannot be read, or is not one JSON object; the message says which and why."""


def add_parser(commands: Any) -> None:
    """Add ``ecs register-task-definition`` to the ``warmstart`` commands."""
    ecs = command_parser(commands, "ecs", "send ECS requests to a service", ECS_EPILOG)
    actions = ecs.add_subparsers(dest="action", required=True)
    register = command_parser(
        actions,
        "register-task-definition",
        "register a task definition from a JSON file, as written",
        ECS_EPILOG,
    )
    register.add_argument("file", metavar="FILE", help="the request's JSON, or - for stdin")
    register.add_argument(
        "--endpoint",
        metavar="URL",
        help="a running warmstart service (http://127.0.0.1:9000); requests are SigV4-signed "
        "when WARMSTART_ACCESS_KEY_ID and WARMSTART_SECRET_ACCESS_KEY are set",
    )
    register.add_argument(
        "--config",
        metavar="FILE",
        help="without --endpoint: the TOML config of a service made for this command",
    )
    register.set_defaults(func=register_task_definition_command)


def read_definition(path: str) -> bytes:
    """The bytes of ``path`` (``-``: stdin), once they are known to hold one JSON object."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            body = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                body = f.read()
    except OSError as exc:
        raise BadFile(f"{name}: {exc.strerror or exc}") from None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadFile(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        found = type(document).__name__
        raise BadFile(f"{name}: a task definition is a JSON object, not a {found}")
    return body


def register_task_definition_command(args: argparse.Namespace) -> int:
    from .client import ServiceError

    try:
        body = read_definition(args.file)
    except BadFile as exc:
        print(f"warmstart: {exc}", file=sys.stderr)
        return 2

    async def work(client: ServiceClient) -> int:
        try:
            answer = await register_task_definition(client, body)
        except ServiceError as exc:  # the service's refusal, in ECS's words
            print(f"warmstart: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0

    return run_connected(connect, args, work)


async def register_task_definition(client: ServiceClient, body: bytes) -> Any:
    """RegisterTaskDefinition with ``body`` as the request, sent as it is; the answer's JSON."""
    from ..service.ecs_api import TARGET_PREFIX
    from ..service.json_rpc import CONTENT_TYPE, TARGET_HEADER

    headers = {
        TARGET_HEADER: f"{TARGET_PREFIX}.RegisterTaskDefinition",
        "Content-Type": CONTENT_TYPE,
    }
    return await client.json("POST", "/", body, headers=headers)
