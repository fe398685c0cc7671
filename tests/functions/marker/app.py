"""Leaves a mark that it ran (a file named by the event), then sleeps as long as asked."""

import os
import time


def handler(event, context):
    mark = event.get("mark")
    if mark:
        with open(mark, "w") as f:
            f.write(context.aws_request_id)
    time.sleep(event.get("seconds", 0))
    return {"pid": os.getpid()}
