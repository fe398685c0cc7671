import json
import os
import time

STARTED = time.time()


def handler(event, context):
    print(f"hello from {context.function_name}, {context.get_remaining_time_in_millis()} ms left")
    return {"echo": event, "pid": os.getpid(), "warm_for_s": round(time.time() - STARTED, 3)}


def fail(event, context):
    raise ValueError(f"cannot handle {json.dumps(event)}")
