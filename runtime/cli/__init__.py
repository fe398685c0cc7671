"""The ``warmstart`` command line: one module per group of subcommands.

``main`` builds the parser; ``functions`` (serve, invoke, functions, logs), ``dlq``, ``jobs``
and ``ecs`` add their subcommands; ``common`` holds what they share (the config, the store's
path, the region and credentials, how a command runs) and ``client`` is the HTTP client they
use to reach a service.
"""

from .main import main

__all__ = ["main"]
