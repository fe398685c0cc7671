"""A module whose import fails with an exception carrying a 300 KB message."""


class EnormousConfigError(Exception):
    pass


raise EnormousConfigError("the real text comes first: " + "y" * 300_000)
