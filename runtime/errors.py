"""Errors, named as AWS names them so callers (and botocore) recognize them."""

from __future__ import annotations


class WarmstartError(Exception):
    """Base of every error warmstart raises on purpose.

    ``code`` is the AWS error name, ``status`` the HTTP status the service answers with.
    """

    code = "ServiceException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceException(WarmstartError):
    """Something inside warmstart failed; the request may be retried."""


class ResourceNotFoundException(WarmstartError):
    code = "ResourceNotFoundException"
    status = 404


class ResourceConflictException(WarmstartError):
    code = "ResourceConflictException"
    status = 409


class InvalidParameterValueException(WarmstartError):
    code = "InvalidParameterValueException"
    status = 400


class InvalidRequestContentException(WarmstartError):
    """The payload is not JSON."""

    code = "InvalidRequestContentException"
    status = 400


class RequestTooLargeException(WarmstartError):
    code = "RequestTooLargeException"
    status = 413


class InvalidZipFileException(WarmstartError):
    code = "InvalidZipFileException"
    status = 502


class TooManyRequestsException(WarmstartError):
    """A concurrency limit refused the invocation; ``reason`` is Lambda's reason code."""

    code = "TooManyRequestsException"
    status = 429

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BatchUnavailableException(WarmstartError):
    """A batch function (timeout over 900 s) was invoked but no batch queue is attached."""

    code = "ResourceConflictException"
    status = 409
