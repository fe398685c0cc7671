"""ECS's error names, as botocore's ``ecs`` model declares them (400s are the caller's fault)."""

from __future__ import annotations

from ..errors import WarmstartError


class ClientException(WarmstartError):
    """The request is wrong: a bad task definition, an inactive one, a missing resource."""

    code = "ClientException"
    status = 400


class InvalidParameterException(WarmstartError):
    """A parameter is out of range or refers to nothing (RunTask, StopTask, DescribeTasks)."""

    code = "InvalidParameterException"
    status = 400


class ClusterNotFoundException(WarmstartError):
    code = "ClusterNotFoundException"
    status = 400


class ServerException(WarmstartError):
    """Something on warmstart's side failed (the Docker Engine did not answer, say)."""

    code = "ServerException"
    status = 500
