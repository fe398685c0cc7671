"""Imports a module that does not exist."""

import warmstart_no_such_module  # noqa: F401


def handler(event, context):
    return "unreachable"
