import os
import time

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    print("ric handling", context.aws_request_id)
    if isinstance(event, dict) and event.get("fail"):
        raise KeyError("nope")
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    if isinstance(event, dict) and event.get("mark"):  # an Event call leaves a trace
        with open(event["mark"], "w") as f:
            f.write(context.aws_request_id)
    custom = context.client_context.custom if context.client_context else None
    return {
        "event_type": type(event).__name__,
        "count": COUNT,
        "pid": os.getpid(),
        "remaining": context.get_remaining_time_in_millis(),
        "arn": context.invoked_function_arn,
        "custom": custom,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }
