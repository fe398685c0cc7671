"""Module state imported once in the template; what each forked worker sees of it."""

import os
import random

AFTER_FORK = []
os.register_at_fork(after_in_child=lambda: AFTER_FORK.append(os.getpid()))
TEMPLATE_PID = os.getpid()


def handler(event, context):
    return {
        "pid": os.getpid(),
        "template_pid": TEMPLATE_PID,
        "random": random.random(),
        "hook_ran_here": AFTER_FORK[-1:] == [os.getpid()],
    }
