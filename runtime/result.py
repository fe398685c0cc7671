"""What an invocation returns: payload, error kind, log tail and Lambda's REPORT figures."""

from __future__ import annotations

import math
from typing import Any

import orjson

LOG_TAIL_BYTES = 4096


class Report:
    """The figures of Lambda's REPORT line for one invocation."""

    __slots__ = (
        "billed_duration_ms",
        "cold",
        "duration_ms",
        "init_duration_ms",
        "max_memory_used_mb",
        "memory_size_mb",
        "request_id",
    )

    def __init__(
        self,
        request_id: str,
        duration_ms: float,
        memory_size_mb: int,
        max_memory_used_mb: int,
        init_duration_ms: float | None = None,
    ) -> None:
        self.request_id = request_id
        self.duration_ms = duration_ms
        self.billed_duration_ms = max(1, math.ceil(duration_ms))
        self.memory_size_mb = memory_size_mb
        self.max_memory_used_mb = max_memory_used_mb
        self.init_duration_ms = init_duration_ms
        self.cold = init_duration_ms is not None

    def line(self) -> str:
        """``REPORT RequestId: ...`` exactly as Lambda writes it."""
        text = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_duration_ms} ms\t"
            f"Memory Size: {self.memory_size_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB\t"
        )
        if self.init_duration_ms is not None:
            text += f"Init Duration: {self.init_duration_ms:.2f} ms\t"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"<Report {self.as_dict()}>"


class InvokeResult:
    """The outcome of one invocation.

    ``payload`` is exactly what the handler returned, JSON-encoded (or Lambda's error
    document when ``function_error`` is set).  ``status_code`` is 200, 202 (Event) or 204
    (DryRun), as Lambda's Invoke answers.  ``log`` is the invocation's log as Lambda writes
    it (``START``, the function's output, ``END``, ``REPORT``), formatted when first read.
    """

    __slots__ = (
        "_log",
        "executed_version",
        "function_error",
        "job",
        "output",
        "payload",
        "preamble",
        "report",
        "status_code",
    )

    def __init__(
        self,
        payload: bytes,
        function_error: str | None = None,
        report: Report | None = None,
        output: bytes = b"",
        status_code: int = 200,
        preamble: bytes = b"",
        job: Any = None,
        executed_version: str = "$LATEST",
    ) -> None:
        self.payload = payload
        #: the version that ran (``X-Amz-Executed-Version``)
        self.executed_version = executed_version
        #: the batch job this call became (a spilled call, or a timeout resubmitted), if any
        self.job = job
        self.function_error = function_error
        self.report = report
        self.output = output
        self.status_code = status_code
        self.preamble = preamble
        self._log: str | None = None

    @property
    def log(self) -> str:
        if self._log is None:
            report = self.report
            if report is None:
                self._log = ""
                return ""
            rid = report.request_id
            start = f"START RequestId: {rid} Version: {self.executed_version}\n"
            end = f"END RequestId: {rid}\n{report.line()}\n"
            if self.preamble:
                self._log = self.preamble.decode(errors="replace") + start + end
            else:
                self._log = start + self.output.decode(errors="replace") + end
        return self._log

    @property
    def log_size(self) -> int:
        """Roughly the bytes of ``log``, without formatting it."""
        return len(self.output) + 300

    @property
    def log_tail(self) -> str:
        """The last 4 KB of this invocation's log, START/END/REPORT included."""
        data = self.log.encode()
        if len(data) <= LOG_TAIL_BYTES:
            return self.log
        return data[-LOG_TAIL_BYTES:].decode(errors="ignore")

    @property
    def request_id(self) -> str:
        return self.report.request_id if self.report else ""

    def json(self) -> Any:
        """The payload decoded."""
        return orjson.loads(self.payload) if self.payload else None

    def __repr__(self) -> str:
        error = f" function_error={self.function_error}" if self.function_error else ""
        return f"<InvokeResult {self.status_code}{error} payload={self.payload[:60]!r}>"


class Accepted(InvokeResult):
    """An Event invocation's answer: 202, no payload, and the request id the invocation
    runs under (its context's ``aws_request_id``)."""

    __slots__ = ("_request_id",)

    def __init__(self, request_id: str) -> None:
        super().__init__(b"", status_code=202)
        self._request_id = request_id

    @property
    def request_id(self) -> str:
        return self._request_id
