"""A handler that tells which container (and which cold start) served it, or fails on demand."""

import os
import socket
import time
import uuid

TOKEN = uuid.uuid4().hex  # new at every cold start
MARKER = "/tmp/marker"


def _swap_marker():
    """What an earlier environment left in /tmp, replaced by this one's token."""
    before = None
    if os.path.exists(MARKER):
        with open(MARKER) as f:
            before = f.read()
    with open(MARKER, "w") as f:
        f.write(TOKEN)
    return before


def handler(event, context):
    do = event.get("do", "ok")
    print(f"served by {socket.gethostname()}")
    if do == "raise":
        raise ValueError("asked to fail")
    if do == "exit":
        os._exit(3)
    if do == "sleep":
        time.sleep(event.get("seconds", 3))
    if do == "oom":
        hog = bytearray(400 * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        return len(hog)
    answer = {
        "token": TOKEN,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "cwd": os.getcwd(),
        "task_writable": os.access(os.environ.get("LAMBDA_TASK_ROOT", "/"), os.W_OK),
    }
    if do == "tmp":
        answer["before"] = _swap_marker()
    if do == "hold":
        held = bytearray(event["mb"] * 1024 * 1024)
        for i in range(0, len(held), 4096):
            held[i] = 1
        answer["held"] = len(held)
    return answer
