"""A handler that tells which container (and which cold start) served it, or fails on demand."""

import os
import socket
import time
import uuid

TOKEN = uuid.uuid4().hex  # new at every cold start


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
    return {"token": TOKEN, "host": socket.gethostname(), "pid": os.getpid()}
