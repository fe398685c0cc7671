"""ECS's API (JSON 1.1, target prefix ``AmazonEC2ContainerServiceV20141113``) over an ``Ecs``.

    boto3.client("ecs") ── POST / ──▶ JsonRpc ──▶ Ecs.<operation>(params) ──▶ ECS JSON

The operations are ``runtime.ecs.OPERATIONS``; their shapes are botocore's ``ecs`` model
(2014-11-13).  The ``Ecs`` is made with the app and needs no Docker Engine until a task runs;
the app closes it on cleanup, which stops and removes every task's containers.
"""

from __future__ import annotations

from ..config import PoolConfig
from ..ecs import OPERATIONS, Ecs
from .json_rpc import JsonRpc

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
#: what ECS calls an unexpected failure on its side
INTERNAL_ERROR = "ServerException"


def serve_ecs(rpc: JsonRpc, pool: PoolConfig) -> Ecs:
    """A new ``Ecs`` for ``pool``'s region and account, served by ``rpc``."""
    ecs = Ecs(pool)
    rpc.register(TARGET_PREFIX, ecs, OPERATIONS, internal_error=INTERNAL_ERROR)
    return ecs
