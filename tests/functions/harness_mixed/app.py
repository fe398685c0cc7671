"""Handlers for the benchmark-harness tests."""

import time

CALLS = 0


def echo(event, context):
    return event


def rotate(event, context):
    """Cycle through ok, ValueError, KeyError: one environment gives equal thirds."""
    global CALLS
    CALLS += 1
    if CALLS % 3 == 1:
        return {"call": CALLS}
    if CALLS % 3 == 2:
        raise ValueError(f"call {CALLS}")
    raise KeyError(f"call {CALLS}")


def sleepy(event, context):
    time.sleep(event.get("s", 0.05))
    return "slept"
