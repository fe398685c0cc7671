"""Module state lives as long as the environment: warm calls see it, cold starts reset it."""

import os

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid(), "greeting": os.environ.get("GREETING", "hi")}
