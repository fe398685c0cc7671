"""One handler, many ways to fail: the event's "do" picks one."""

import ctypes
import os
import signal
import sys
import tempfile
import time


def boom(event):
    raise ValueError(f"bad value {event.get('n', 42)}")


def main(event, context):
    do = event.get("do", "ok")
    if do == "ok":
        return {"pid": os.getpid(), "tmp": sorted(os.listdir(tempfile.gettempdir()))}
    if do == "raise":
        boom(event)
    if do == "exit3":
        os._exit(3)
    if do == "work_then_exit":
        time.sleep(event.get("seconds", 0.2))
        os._exit(3)
    if do == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if do == "segfault":
        ctypes.string_at(0)
    if do == "sleep":
        with open(os.path.join(tempfile.gettempdir(), "written-before-timeout"), "w") as f:
            f.write(str(os.getpid()))
        print("going to sleep", flush=True)
        time.sleep(5)
        return "woke up"
    if do == "oom":
        hog = bytearray(400 * 1024 * 1024)
        return len(hog)
    if do == "set":
        return {1, 2, 3}
    if do == "huge":
        return "x" * (7 * 1024 * 1024)
    if do == "sys_exit0":
        sys.exit(0)
    raise AssertionError(f"unknown action {do!r}")
