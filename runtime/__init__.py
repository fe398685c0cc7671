"""warmstart: AWS Lambda's invocation model on your own machine.

from runtime import Engine, FunctionConfig, run

async def main():
    async with Engine() as engine:
        config = FunctionConfig(name="hello", handler="app.handler", code="examples/hello")
        await engine.register(config)
        result = await engine.invoke("hello", {"x": 1})

run(main())   # uvloop when installed
"""

from .blocking import BlockingEngine
from .config import FunctionConfig, PoolConfig
from .engine import Engine
from .environment import EnvStatus
from .errors import (
    InvalidParameterValueException,
    InvalidRequestContentException,
    InvalidZipFileException,
    RequestTooLargeException,
    ResourceConflictException,
    ResourceNotFoundException,
    ServiceException,
    TooManyRequestsException,
    WarmstartError,
)
from .loop import run
from .result import InvokeResult, Report

__version__ = "0.1.0"

__all__ = [
    "BlockingEngine",
    "Engine",
    "EnvStatus",
    "FunctionConfig",
    "InvalidParameterValueException",
    "InvalidRequestContentException",
    "InvalidZipFileException",
    "InvokeResult",
    "PoolConfig",
    "Report",
    "RequestTooLargeException",
    "ResourceConflictException",
    "ResourceNotFoundException",
    "ServiceException",
    "TooManyRequestsException",
    "WarmstartError",
    "__version__",
    "run",
]
