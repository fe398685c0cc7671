"""Lambda's Runtime API, served to a runtime the agent runs as its child (``provided.*``).

    engine ──INVOKE──▶ main thread ──answers the pending GET /next──▶ bootstrap (child)
           ◀─RESULT/ERROR── events ◀── POST /invocation/{id}/response | /error ──┘
                            events ◀── POST /runtime/init/error, the child's exit

The frames with the engine are those of a Python worker: INIT, then INIT_OK (at the runtime's
first ``/next``, which ends Lambda's init phase) or INIT_ERROR, then INVOKE and RESULT or ERROR.
The HTTP side is ``http.server`` on threads of its own (one per connection, HTTP/1.1
keep-alive, chunked request bodies and their trailers read here).  A ``/next`` with nothing to
run blocks its thread on the exchange's condition, with no timeout: a runtime may wait minutes
between invocations.  The main thread alone talks to the engine; other threads hand it events
through a queue and a wake-up pipe.

The runtime stays in the agent's process group (the engine starts the agent as a session
leader), so killing the group on a timeout takes the runtime and whatever it started with it.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import protocol as P
from .worker import INIT_LOG_CAP, Agent, error_body

PREFIX = "/2018-06-01/runtime/"
NEXT = PREFIX + "invocation/next"
INIT_ERROR = PREFIX + "init/error"
_INVOCATION = re.compile(r"^/2018-06-01/runtime/invocation/([^/]+)/(response|error)$")
_ERROR_TYPE = re.compile(r"^(Runtime|Function)\.[A-Z][a-zA-Z]+$")
LIMIT = P.RESPONSE_LIMIT
#: a body past LIMIT is read and dropped up to here (so that the runtime reads its 413);
#: a longer one closes the connection
DISCARD_CAP = 64 * 1024 * 1024
_CHUNK = 64 * 1024
STOP_GRACE_S = 1.0
P_ORIGIN = time.perf_counter_ns

# runtime states, as Lambda's Runtime API names them in its error messages
STARTED = "RuntimeStartedState"
READY = "RuntimeReadyState"
RUNNING = "RuntimeRunningState"
SENT = "RuntimeResponseSentState"
INIT_FAILED = "RuntimeInitErrorState"
CLOSED = "RuntimeClosedState"

INVALID_ID = b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}'
ACCEPTED = b'{"status":"OK"}'
TOO_LARGE = json.dumps(
    {
        "errorMessage": f"Exceeded maximum allowed payload size ({LIMIT} bytes).",
        "errorType": "RequestEntityTooLarge",
    },
    separators=(",", ":"),
).encode()
BAD_MODE = (
    b'{"errorMessage":"Invalid function response mode","errorType":"InvalidFunctionResponseMode"}'
)
MALFORMED = b'{"errorMessage":"Malformed request body","errorType":"InvalidRequest"}'
CONTAINER_ERROR = json.dumps(
    {
        "errorMessage": "Container error. Non-recoverable state. Runtime should exit promptly.",
        "errorType": "Runtime.ExitError",
    }
).encode()


def valid_error_type(value: str | None) -> str:
    """Lambda keeps ``Runtime.Xxx`` / ``Function.Xxx``; anything else becomes ``*.Unknown``."""
    value = value or ""
    if _ERROR_TYPE.match(value):
        return value
    return "Function.Unknown" if value.startswith("Function.") else "Runtime.Unknown"


def transition_error(state: str, target: str) -> bytes:
    message = (
        f"State transition from {state} to {target} failed for runtime. "
        "Error: State transition is not allowed"
    )
    return json.dumps({"errorType": "InvalidStateTransition", "errorMessage": message}).encode()


def too_large_error(size: int) -> bytes:
    """What the caller gets for a response over Lambda's limit."""
    message = (
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({LIMIT} bytes)."
    )
    doc = {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}
    return json.dumps(doc).encode()


def error_document(header: str | None, body: bytes) -> bytes:
    """The error the caller gets for ``/error`` or ``/init/error``: the runtime's JSON document
    as it sent it, or one built from the error-type header when the body is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return body
    message = body.decode(errors="replace") if body else ""
    return error_body(valid_error_type(header), message)


def trace_id() -> str:
    """An X-Ray trace header for one invocation."""
    root = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
    return f"Root={root};Parent={os.urandom(8).hex()};Sampled=0"


class Invocation:
    """One event as ``/next`` renders it (the same each time it is asked for again)."""

    __slots__ = ("headers", "payload", "request_id")

    def __init__(self, request_id: str, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.request_id = request_id
        self.payload = payload
        self.headers = headers

    @classmethod
    def from_frame(cls, frame: P.Frame, function_arn: str) -> Invocation:
        rid_b, payload, extra = frame.fields
        rid = rid_b.decode()
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", rid),
            ("Lambda-Runtime-Deadline-Ms", str(frame.a)),
            ("Lambda-Runtime-Invoked-Function-Arn", function_arn),
            ("Lambda-Runtime-Trace-Id", trace_id()),
        ]
        if extra:
            data = json.loads(extra)
            for key, header in (
                ("client_context", "Lambda-Runtime-Client-Context"),
                ("identity", "Lambda-Runtime-Cognito-Identity"),
            ):
                if data.get(key) is not None:
                    headers.append((header, json.dumps(data[key])))
        return cls(rid, payload, headers)


class Exchange:
    """The runtime's state machine, shared by the HTTP threads and the main thread.

    A request is validated before it changes anything (a wrong id is a 400 whatever the
    state), and a change is made under the lock, so two racing responses cannot both win."""

    def __init__(self, post: Callable[[tuple[Any, ...]], None]) -> None:
        self._cond = threading.Condition()
        self._post = post
        self.state = STARTED
        self.current: Invocation | None = None
        self.pending: Invocation | None = None
        self.nexted = False

    def next(self) -> Invocation | None:
        """Block until there is an invocation to run (None: the environment is closing).

        Asked again while one runs, it is the same one; asked after a response, the runtime
        is ready for the next, which the engine may have sent already (``pending``)."""
        with self._cond:
            if not self.nexted:
                self.nexted = True
                self._post(("ready",))
            while True:
                if self.state == CLOSED:
                    return None
                if self.state == RUNNING:
                    return self.current
                if self.state in (STARTED, SENT):
                    self.state, self.current = READY, None
                if self.state == READY and self.pending is not None:
                    self.current, self.pending, self.state = self.pending, None, RUNNING
                    return self.current
                self._cond.wait()

    def start(self, invocation: Invocation) -> None:
        """The engine's next invocation, for the runtime's next ``/next``."""
        with self._cond:
            self.pending = invocation
            self._cond.notify_all()

    def finish(self, request_id: str, target: str) -> bytes | None:
        """Move the invocation ``request_id`` to response-sent; the refusal, or None."""
        with self._cond:
            if self.current is None or request_id != self.current.request_id:
                return INVALID_ID
            if self.state != RUNNING:
                return transition_error(self.state, target)
            self.state = SENT
            return None

    def fail_init(self) -> bytes | None:
        with self._cond:
            if self.nexted or self.state != STARTED:
                return transition_error(self.state, "InitError")
            self.state = INIT_FAILED
            return None

    def close(self) -> None:
        with self._cond:
            self.state = CLOSED
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    exchange: Exchange
    post: Callable[[tuple[Any, ...]], None]

    def server_bind(self) -> None:
        # HTTPServer's own asks the resolver for this host's name; nothing here needs it
        self.socket.bind(self.server_address)
        host, port = self.socket.getsockname()[:2]
        self.server_address = (host, port)
        self.server_name, self.server_port = host, port


class BodyTooLong(Exception):
    """A request body past DISCARD_CAP: the connection is closed unread."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the log is the function's: the API's own traffic stays out of it

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _other_method(self) -> None:
        self._route(self.command)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _other_method

    def _route(self, method: str) -> None:
        try:
            body, size, trailers = self._read_body()
        except ValueError:
            self.close_connection = True
            self._answer(400, MALFORMED)
            return
        except BodyTooLong:
            self.close_connection = True
            self._answer(413, TOO_LARGE)
            return
        path = self.path.split("?", 1)[0]
        match = _INVOCATION.match(path)
        if path == NEXT:
            if method != "GET":
                self._answer(405, b"", "text/plain; charset=utf-8")
            else:
                self._next()
        elif match or path == INIT_ERROR:
            if method != "POST":
                self._answer(405, b"", "text/plain; charset=utf-8")
            elif match:
                self._invocation(match.group(1), match.group(2), body, size, trailers)
            else:
                self._init_error(body)
        else:
            self._answer(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _next(self) -> None:
        invocation = self.server.exchange.next()
        if invocation is None:
            self._answer(500, CONTAINER_ERROR)
            return
        self._answer(200, invocation.payload, "application/json", invocation.headers)

    def _invocation(
        self, request_id: str, what: str, body: bytes, size: int, trailers: dict[str, str]
    ) -> None:
        exchange = self.server.exchange
        target = "InvocationResponse" if what == "response" else "InvocationErrorResponse"
        refused = exchange.finish(request_id, target)
        if refused is not None:
            self._answer(400 if refused is INVALID_ID else 403, refused)
            return
        post = self.server.post
        mode = self.headers.get("Lambda-Runtime-Function-Response-Mode")
        if what == "error":
            header = self.headers.get("Lambda-Runtime-Function-Error-Type")
            post(("error", request_id, error_document(header, body)))
            self._answer(202, ACCEPTED)
        elif mode is not None and mode.lower() != "streaming":
            message = f"Invalid function response mode: {mode}"
            post(("error", request_id, error_body("Runtime.InvalidResponseModeHeader", message)))
            self._answer(400, BAD_MODE)
        elif size > LIMIT:
            post(("error", request_id, too_large_error(size)))
            self._answer(413, TOO_LARGE)
        elif "lambda-runtime-function-error-type" in trailers:
            post(("error", request_id, self._stream_error(trailers)))
            self._answer(202, ACCEPTED)
        else:
            post(("result", request_id, body))
            self._answer(202, ACCEPTED)

    @staticmethod
    def _stream_error(trailers: dict[str, str]) -> bytes:
        """A streamed response that failed midway: its trailers name the error."""
        try:
            text = base64.b64decode(trailers.get("lambda-runtime-function-error-body", ""))
            message = text.decode(errors="replace")
        except (binascii.Error, ValueError):
            message = trailers.get("lambda-runtime-function-error-body", "")
        return error_body(valid_error_type(trailers["lambda-runtime-function-error-type"]), message)

    def _init_error(self, body: bytes) -> None:
        refused = self.server.exchange.fail_init()
        if refused is not None:
            self._answer(403, refused)
            return
        header = self.headers.get("Lambda-Runtime-Function-Error-Type")
        self.server.post(("init_error", error_document(header, body)))
        self._answer(202, ACCEPTED)

    # -- HTTP ------------------------------------------------------------------------------

    def _answer(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: list[tuple[str, str]] | tuple[()] = (),
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> tuple[bytes, int, dict[str, str]]:
        """The request body (empty past LIMIT), its size, and its trailers (names lowered)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > DISCARD_CAP:
            raise BodyTooLong(length)
        if length <= LIMIT:
            return self.rfile.read(length), length, {}
        left = length
        while left:
            got = self.rfile.read(min(left, _CHUNK))
            if not got:
                raise BodyTooLong(length)
            left -= len(got)
        return b"", length, {}

    def _read_chunked(self) -> tuple[bytes, int, dict[str, str]]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BodyTooLong(size)
            chunk = int(line.split(b";", 1)[0].strip(), 16)
            if chunk == 0:
                break
            size += chunk
            if size > DISCARD_CAP:
                raise BodyTooLong(size)
            data = self.rfile.read(chunk)
            if len(data) != chunk:
                raise BodyTooLong(size)
            if size <= LIMIT:
                parts.append(data)
            self.rfile.readline(16)
        trailers = {}
        while True:
            line = self.rfile.readline(64 * 1024)
            if not line.endswith(b"\n"):
                raise BodyTooLong(size)
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            trailers[name.strip().lower()] = value.strip()
        return (b"".join(parts) if size <= LIMIT else b""), size, trailers


def _peak_kib(pid: int) -> int:
    """The runtime process's peak RSS (VmHWM), in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _child_setup() -> None:
    """In the runtime's process before its exec: die with the agent, and take Ctrl-C as a
    process normally does (the agent ignores it, and an ignored signal stays so across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Bridge:
    """One environment of a custom runtime: the engine's socket on one side, the Runtime API
    and the ``bootstrap`` process on the other."""

    def __init__(self, sock: socket.socket, cfg: dict[str, Any]) -> None:
        self.sock = sock
        self.cfg = cfg
        self.agent = Agent(cfg)
        self._events: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.exchange = Exchange(self._post)
        self.server: _Server | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._decoder = P.Decoder()
        self._running: Invocation | None = None
        self._t0 = 0

    def _post(self, event: tuple[Any, ...]) -> None:
        self._events.append(event)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the main thread has wake-ups pending already

    # -- start -----------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        env = cfg["env"]
        os.environ.update(cfg["environ"])
        os.environ.update(env["environ"])
        try:
            os.chdir(cfg["task_root"])
        except OSError:
            pass  # an image without the folder: the runtime's own working directory is checked
        self.agent.capture(env["log_path"])

    def launch(self) -> bytes | None:
        """Listen, start the runtime; the init error document when it cannot start."""
        cfg = self.cfg
        try:
            server = self.server = _Server(("127.0.0.1", cfg.get("runtime_api_port", 0)), _Handler)
        except OSError as exc:
            return error_body("Runtime.Unknown", f"Error: the Runtime API cannot listen: {exc}")
        server.exchange = self.exchange
        server.post = self._post
        environ = dict(os.environ)
        environ["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_port}"
        environ.pop("AWS_EXECUTION_ENV", None)  # Lambda defines none for provided runtimes
        argv = list(cfg["bootstrap"])
        path = argv[0]
        cwd = cfg.get("runtime_cwd") or cfg["task_root"]
        if not os.path.isdir(cwd):
            server.server_close()
            return error_body("Runtime.InvalidWorkingDir", f"Error: chdir {cwd}: no such directory")
        try:
            # no thread runs yet, so the child's pre-exec step is safe
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                preexec_fn=_child_setup,
            )
        except OSError as exc:
            server.server_close()
            reason = (exc.strerror or str(exc)).lower()
            return error_body("Runtime.InvalidEntrypoint", f"Error: fork/exec {path}: {reason}")
        threading.Thread(target=server.serve_forever, name="runtime-api", daemon=True).start()
        threading.Thread(target=self._watch, name="runtime-exit", daemon=True).start()
        return None

    def _watch(self) -> None:
        assert self.proc is not None
        self._post(("exit", self.proc.wait()))

    # -- the main loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Serve the environment; returns the agent's exit status (the runtime's, if it died)."""
        t0 = P_ORIGIN()
        self.setup()
        failure = self.launch()
        if failure is not None:
            self._send(P.encode(P.INIT_ERROR, (failure, self.agent.take_log(INIT_LOG_CAP)), 0))
            return 1
        initialized = False
        while True:
            event = self._wait()
            if event is None:  # the engine closed the socket: the environment stops
                self._end_runtime()
                return 0
            kind = event[0]
            if kind == "frame":
                self._invoke(event[1])
            elif kind == "ready" and not initialized:
                initialized = True
                peak = _peak_kib(self.proc.pid) if self.proc else 0
                self._send(P.encode(P.INIT_OK, (b"",), P_ORIGIN() - t0, peak))
            elif kind == "init_error":
                log = self.agent.take_log(INIT_LOG_CAP)
                self._send(P.encode(P.INIT_ERROR, (event[1], log), P_ORIGIN() - t0))
                self._end_runtime()
                return 1
            elif kind in ("result", "error"):
                self._answer(event[1], P.RESULT if kind == "result" else P.ERROR, event[2])
            elif kind == "exit":
                return self._runtime_exited(event[1], initialized, P_ORIGIN() - t0)

    def _wait(self) -> tuple[Any, ...] | None:
        """The next event: a frame from the engine, or one the other threads posted."""
        while True:
            if self._events:
                return self._events.popleft()
            sock = self.sock.fileno()
            ready, _, _ = select.select([sock, self._wake_r], [], [])
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            if sock in ready:
                data = self.sock.recv(1 << 16)
                if not data:
                    return None
                for frame in self._decoder.feed(data):
                    self._events.append(("frame", frame))

    def _invoke(self, frame: P.Frame) -> None:
        if frame.kind != P.INVOKE or self._running is not None:
            raise P.ProtocolError(f"runtime bridge expected INVOKE, got {frame!r}")
        invocation = Invocation.from_frame(frame, self.cfg["invoked_function_arn"])
        self._running = invocation
        self._t0 = P_ORIGIN()
        self.exchange.start(invocation)

    def _answer(self, request_id: str, kind: int, body: bytes) -> None:
        if self._running is None or self._running.request_id != request_id:
            return  # the exchange already refused it
        self._running = None
        duration = P_ORIGIN() - self._t0
        rid = request_id.encode()
        room = P.MAX_BODY - 12 - len(rid) - len(body)
        log = self.agent.take_log(max(0, min(self.agent.log_cap, room)))
        peak = _peak_kib(self.proc.pid) if self.proc else 0
        self._send(P.encode(kind, (rid, body, log), duration, peak))

    def _runtime_exited(self, code: int, initialized: bool, took: int) -> int:
        """The runtime ended: before its first ``/next`` that is an init error; after it, the
        agent ends with the same status, and the engine answers the call Runtime.ExitError."""
        self.exchange.close()
        self._end_runtime()
        if not initialized:
            how = f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            body = error_body("Runtime.ExitError", f"Error: Runtime exited with error: {how}")
            self._send(P.encode(P.INIT_ERROR, (body, self.agent.take_log(INIT_LOG_CAP)), took))
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        return code

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the engine is gone; the socket's end tells the loop

    def _end_runtime(self) -> None:
        """Stop the runtime and what it started (SIGTERM to our process group, then SIGKILL)."""
        self.exchange.close()
        proc = self.proc
        if os.getpgrp() == os.getpid():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                os.killpg(0, signal.SIGTERM)
            except OSError:
                pass
        elif proc is not None and proc.poll() is None:
            proc.terminate()
        if proc is not None:
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.server is not None:
            self.server.server_close()


def run(sock: socket.socket, cfg: dict[str, Any]) -> int:
    """Serve a custom runtime's environment on the engine's stream socket ``sock``."""
    return Bridge(sock, cfg).run()
