"""Output at the frame limits: the event says how much to print and how big a result to return."""

import os
import sys

FIRST = "first line of the log\n"
LAST = "last line of the log\n"


def handler(event, context):
    printed = event.get("print", 0)
    if printed:
        # a marker line at each end, so that a test can tell which end of the log was kept
        sys.stdout.write(FIRST + "x" * (printed - len(FIRST) - len(LAST) - 1) + "\n" + LAST)
        sys.stdout.flush()
    if "return" in event:
        return "r" * (event["return"] - 2)  # with its quotes, exactly that many bytes of JSON
    return {"pid": os.getpid()}
