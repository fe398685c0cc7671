"""Handlers behind the API Gateway tests: each lets the test see what the handler received."""

import base64
import json
import time
from urllib.parse import parse_qsl, unquote


def echo_v2(event, context):
    """Payload 2.0 without a statusCode: the gateway answers 200 with this JSON as the body."""
    return event


def echo_v1(event, context):
    """Payload 1.0: the event as the body of a proxy response, with a multi-value header."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"X-Echo": ["one", "two"]},
        "body": json.dumps(event),
    }


def reverse_bytes(event, context):
    """Binary in, binary out: the request body reversed, base64 both ways."""
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(event["body"])
    else:
        raw = (event.get("body") or "").encode()
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/octet-stream"},
        "body": base64.b64encode(raw[::-1]).decode(),
        "isBase64Encoded": True,
    }


def fail(event, context):
    raise RuntimeError("the handler failed")


def slow(event, context):
    time.sleep(2.0)
    return {"statusCode": 200, "body": "too late"}


def mini_app(event, context):
    """A small web app behind an adapter that reads a 2.0 event the way Mangum does: the
    request is rebuilt from rawPath, rawQueryString, headers, cookies and body, and the app's
    answer goes back as statusCode, headers, cookies and body."""
    http = event["requestContext"]["http"]
    headers = dict(event["headers"])
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    scope = {
        "method": http["method"],
        "path": unquote(event["rawPath"]),
        "raw_path": event["rawPath"].encode(),
        "query_string": event["rawQueryString"].encode(),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": (http["sourceIp"], 0),
    }
    status, out_headers, out_body = _app(scope, data)
    return {
        "statusCode": status,
        "headers": {k: v for k, v in out_headers if k != "set-cookie"},
        "cookies": [v for k, v in out_headers if k == "set-cookie"],
        "body": out_body.decode(),
        "isBase64Encoded": False,
    }


def _app(scope, body):
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    summary = {
        "method": scope["method"],
        "path": scope["path"],
        "query": parse_qsl(scope["query_string"].decode()),
        "cookie": headers.get("cookie"),
        "content_type": headers.get("content-type"),
        "body": body.decode(),
    }
    out_headers = [
        ("content-type", "application/json"),
        ("set-cookie", "session=abc; Path=/; HttpOnly"),
        ("set-cookie", "theme=dark"),
    ]
    return 201, out_headers, json.dumps(summary).encode()
