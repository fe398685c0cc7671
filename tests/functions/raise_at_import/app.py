"""Raises while it is imported (Lambda's init phase)."""


class ConfigMissingError(Exception):
    pass


raise ConfigMissingError("DATABASE_URL is not set")


def handler(event, context):
    return "unreachable"
