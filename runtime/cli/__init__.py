"""The ``warmstart`` command line: one module per group of subcommands.

``main`` builds the parser; ``functions`` (serve, invoke, functions, logs, dlq), ``jobs`` and
``ecs`` add their subcommands; ``client`` is the HTTP client they share to reach a service.
"""

from .main import main

__all__ = ["main"]
