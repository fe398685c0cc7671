"""Well-behaved handlers for the engine tests: each returns what the test needs to check."""

import logging
import os
import sys
import time


def echo(event, context):
    return event


def whoami(event, context):
    return {"pid": os.getpid(), "ppid": os.getppid(), "version": VERSION}


def noisy(event, context):
    """Print a marker many times to stdout and stderr, yielding the CPU now and then."""
    marker = event["marker"]
    for i in range(event.get("n", 200)):
        print(f"<{marker}> out {i}")
        print(f"<{marker}> err {i}", file=sys.stderr)
        if i % 25 == 0:
            time.sleep(0.001)
    return {"marker": marker, "pid": os.getpid()}


def chatty(event, context):
    """Print about ``kb`` kilobytes, then a last line."""
    line = "y" * 1023
    for _ in range(event["kb"]):
        print(line)
    print("last line of chatty")
    return event["kb"]


def log_info(event, context):
    logging.getLogger().setLevel(logging.INFO)
    logging.info("hello from logging %s", event["n"])
    logging.debug("debug is below the level")
    return "logged"


def ctx(event, context):
    client = context.client_context
    app = client.client if client else None
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "cognito_identity_id": context.identity.cognito_identity_id,
        "cognito_identity_pool_id": context.identity.cognito_identity_pool_id,
        "client_installation_id": app.installation_id if app else None,
        "client_custom": client.custom if client else None,
        "client_env": client.env if client else None,
    }


def environ(event, context):
    return dict(os.environ)


def read(event, context):
    """A file of the function's code, by a path relative to the working directory."""
    with open(event["path"]) as f:
        return {"cwd": os.getcwd(), "text": f.read()}


def alloc(event, context):
    """Touch ``mb`` megabytes (bytes multiplication writes every page)."""
    data = b"\x01" * (event["mb"] * 1024 * 1024)
    return len(data)


def sleep(event, context):
    time.sleep(event["s"])
    return os.getpid()


def flexible(event, context):
    """Sleep ``s`` seconds, then fail if asked to."""
    time.sleep(event.get("s", 0))
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return "ok"


VERSION = os.environ.get("VER", "1")


def size(event, context):
    return len(event)
