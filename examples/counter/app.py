"""Module state lives as long as the environment: warm calls see it, cold starts reset it."""

import json
import os

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid(), "greeting": os.environ.get("GREETING", "hi")}


def http(event, context):
    """Behind a REST API (payload 1.0) route: answer with a proxy response."""
    global COUNT
    COUNT += 1
    body = {"count": COUNT, "name": (event.get("pathParameters") or {}).get("name")}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }
