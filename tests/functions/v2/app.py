"""Second version of a function's code, for update(code=...)."""

import os


def whoami(event, context):
    return {"pid": os.getpid(), "ppid": os.getppid(), "version": "code-v2"}
