"""Lambda's Runtime API, served to a runtime the agent runs as its child (``provided.*``'s
``bootstrap``, an image's entrypoint, or ``node`` running our client ``nodejs/runtime.js``).

    engine ──INVOKE──▶ ┐                    ┌──answers the parked GET /next──▶ runtime (child)
           ◀─RESULT/ERROR── one select loop ◀── POST /invocation/{id}/response | /error ──┘
                       └────────────────────◀── POST /runtime/init/error, the child's exit

The frames with the engine are those of a Python worker: INIT, then INIT_OK (at the runtime's
first ``/next``, which ends Lambda's init phase) or INIT_ERROR, then INVOKE and RESULT or ERROR.
One thread serves both sides: the engine's socket, the Runtime API's listener and its
connections are in one selector, so an invocation goes from its INVOKE frame to the runtime's
``/next`` answer (and from its ``/response`` to the RESULT frame) without a hand-off between
threads.  The HTTP/1.1 side is small and written for the requests a runtime makes: keep-alive,
pipelining, ``Expect: 100-continue``, ``Content-Length`` or chunked bodies and their trailers
(read incrementally: a body past Lambda's limit is counted and dropped, not kept).  A ``/next``
with nothing to run is parked, with no timeout (a runtime may wait minutes between
invocations), and answered when the engine's next INVOKE comes.  Answers go out in one write,
with TCP_NODELAY.  A thread of its own waits for the runtime's exit and wakes the loop.

The runtime stays in the agent's process group (the engine starts the agent as a session
leader, or the sandbox forks it as a group leader), so killing the group on a timeout takes the
runtime and whatever it started with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time
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
#: a request's line and headers, at most (then 431 and the connection closes)
HEAD_LIMIT = 64 * 1024
_CHUNK_LINE_LIMIT = 1024
_RECV = 256 * 1024
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
MALFORMED = b'{"errorMessage":"Malformed request","errorType":"InvalidRequest"}'
HEAD_TOO_LARGE = b'{"errorMessage":"Request header fields too large","errorType":"InvalidRequest"}'
CONTAINER_ERROR = json.dumps(
    {
        "errorMessage": "Container error. Non-recoverable state. Runtime should exit promptly.",
        "errorType": "Runtime.ExitError",
    }
).encode()
NOT_FOUND = b"404 page not found\n"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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


def answer(
    status: int,
    body: bytes,
    content_type: str = JSON,
    headers: list[tuple[str, str]] | tuple[()] = (),
    with_body: bool = True,
) -> bytes:
    """One HTTP/1.1 answer, whole (status line, headers, body)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if with_body else head


class Invocation:
    """One event as ``/next`` renders it (the same each time it is asked for again)."""

    __slots__ = ("headers", "payload", "request_id")

    def __init__(self, request_id: str, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.request_id = request_id
        self.payload = payload
        self.headers = headers

    @classmethod
    def from_frame(cls, frame: P.Frame, function_arn: str) -> Invocation:
        """``function_arn`` is INIT's; the frame's extra JSON names another one the call was
        invoked by (an alias's, ``…:$LATEST``)."""
        rid_b, payload, extra = frame.fields
        rid = rid_b.decode()
        data = json.loads(extra) if extra else None
        if data is not None:
            function_arn = data.get("invoked_function_arn", function_arn)
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", rid),
            ("Lambda-Runtime-Deadline-Ms", str(frame.a)),
            ("Lambda-Runtime-Invoked-Function-Arn", function_arn),
            ("Lambda-Runtime-Trace-Id", trace_id()),
        ]
        if data is not None:
            for key, header in (
                ("client_context", "Lambda-Runtime-Client-Context"),
                ("identity", "Lambda-Runtime-Cognito-Identity"),
            ):
                if data.get(key) is not None:
                    headers.append((header, json.dumps(data[key])))
        return cls(rid, payload, headers)


class Exchange:
    """The runtime's state machine.

    A request is validated before it changes anything (a wrong id is a 400 whatever the
    state), as Lambda's Runtime API does: its transitions cannot be undone."""

    def __init__(self, post: Callable[[tuple[Any, ...]], None]) -> None:
        self._post = post
        self.state = STARTED
        self.current: Invocation | None = None
        self.pending: Invocation | None = None
        self.nexted = False

    def next(self) -> Invocation | None:
        """The invocation a ``/next`` gets now, or None: it waits (or the exchange is closed).

        Asked again while one runs, it is the same one; asked after a response, the runtime
        is ready for the next, which the engine may have sent already (``pending``)."""
        if not self.nexted:
            self.nexted = True
            self._post(("ready",))
        if self.state == CLOSED:
            return None
        if self.state == RUNNING:
            return self.current
        if self.state in (STARTED, SENT):
            self.state, self.current = READY, None
        if self.state == READY and self.pending is not None:
            self.current, self.pending, self.state = self.pending, None, RUNNING
            return self.current
        return None

    def start(self, invocation: Invocation) -> None:
        """The engine's next invocation, for the runtime's next ``/next``."""
        self.pending = invocation

    def finish(self, request_id: str, target: str) -> bytes | None:
        """Move the invocation ``request_id`` to response-sent; the refusal, or None."""
        if self.current is None or request_id != self.current.request_id:
            return INVALID_ID
        if self.state != RUNNING:
            return transition_error(self.state, target)
        self.state = SENT
        return None

    def fail_init(self) -> bytes | None:
        if self.nexted or self.state != STARTED:
            return transition_error(self.state, "InitError")
        self.state = INIT_FAILED
        return None

    def close(self) -> None:
        self.state = CLOSED


class BadRequest(Exception):
    """A request that cannot be read: answered with ``status`` and ``body``, then the
    connection closes."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class Request:
    """One request: its line and headers at once, its body as it arrives."""

    __slots__ = (
        "chunk_left",
        "chunked",
        "headers",
        "keep_alive",
        "left",
        "method",
        "parts",
        "path",
        "phase",
        "size",
        "trailers",
    )

    def __init__(self, method: str, path: str, headers: dict[str, str], keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.keep_alive = keep_alive
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.left = 0  # Content-Length bytes still to read
        self.chunk_left = 0
        self.phase = "size"  # chunked: size, data, crlf, trailers
        self.size = 0
        self.parts: list[bytes] = []
        self.trailers: dict[str, str] = {}

    @property
    def body(self) -> bytes:
        """The body, or nothing when it was past LIMIT (its ``size`` says how long)."""
        return b"".join(self.parts) if self.size <= LIMIT else b""

    def _take(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > DISCARD_CAP:
            raise BadRequest(413, TOO_LARGE)
        if self.size <= LIMIT:
            self.parts.append(data)
        elif self.parts:
            self.parts = []  # past the limit: counted, not kept

    def feed(self, buf: bytearray) -> bool:
        """Take what ``buf`` holds of the body (consuming it); whether the body is whole."""
        if not self.chunked:
            take = min(self.left, len(buf))
            if take:
                self._take(bytes(buf[:take]))
                del buf[:take]
                self.left -= take
            return self.left == 0
        while True:
            step = getattr(self, f"_{self.phase}")(buf)
            if step is not None:
                return bool(step)

    # each step of a chunked body: None to go on, False to wait for more, True when whole

    def _size(self, buf: bytearray) -> bool | None:
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > _CHUNK_LINE_LIMIT:
                raise BadRequest(400, MALFORMED)
            return False
        line = bytes(buf[:end]).split(b";", 1)[0].strip()
        del buf[: end + 1]
        try:
            self.chunk_left = int(line, 16)
        except ValueError:
            raise BadRequest(400, MALFORMED) from None
        if self.chunk_left < 0:
            raise BadRequest(400, MALFORMED)
        self.phase = "data" if self.chunk_left else "trailers"
        return None

    def _data(self, buf: bytearray) -> bool | None:
        take = min(self.chunk_left, len(buf))
        if not take:
            return False
        self._take(bytes(buf[:take]))
        del buf[:take]
        self.chunk_left -= take
        if self.chunk_left == 0:
            self.phase = "crlf"
        return None

    def _crlf(self, buf: bytearray) -> bool | None:
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > 2:
                raise BadRequest(400, MALFORMED)
            return False
        if bytes(buf[:end]).strip():
            raise BadRequest(400, MALFORMED)
        del buf[: end + 1]
        self.phase = "size"
        return None

    def _trailers(self, buf: bytearray) -> bool | None:
        """Trailer lines, until an empty one."""
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > HEAD_LIMIT:
                raise BadRequest(431, HEAD_TOO_LARGE)
            return False
        line = bytes(buf[:end]).rstrip(b"\r")
        del buf[: end + 1]
        if not line:
            return True
        name, _, value = line.decode("latin-1").partition(":")
        self.trailers[name.strip().lower()] = value.strip()
        return None


def parse_head(head: bytes) -> Request:
    """A request line and its headers (names lowered); BadRequest if they cannot be read."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, MALFORMED)
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, MALFORMED)
        headers[name.lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection unless told not to; 1.0 closes it unless asked
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    request = Request(method, target.split("?", 1)[0], headers, keep_alive)
    if not request.chunked:
        try:
            request.left = int(headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest(400, MALFORMED) from None
        if request.left < 0:
            raise BadRequest(400, MALFORMED)
        if request.left > DISCARD_CAP:
            raise BadRequest(413, TOO_LARGE)
    return request


class Connection:
    """One of the runtime's connections: what it sent that is not handled yet, what is still
    to be written to it, the request being read and a parked ``/next``."""

    __slots__ = ("buf", "closing", "out", "parked", "request", "sock", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.request: Request | None = None
        #: a /next that waits for an invocation (nothing after it is read until it is answered)
        self.parked: Request | None = None
        #: close once ``out`` is written
        self.closing = False
        self.writing = False

    def next_request(self) -> Request | None:
        """The next whole request in ``buf``, or None until more arrives."""
        request = self.request
        if request is None:
            end = self.buf.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
            if end < 0:
                if len(self.buf) > HEAD_LIMIT:
                    raise BadRequest(431, HEAD_TOO_LARGE)
                return None
            request = self.request = parse_head(bytes(self.buf[:end]))
            del self.buf[: end + 4]
            expects = request.headers.get("expect", "").lower() == "100-continue"
            if expects and (request.chunked or request.left > len(self.buf)):
                self.out += CONTINUE
        if not request.feed(self.buf):
            return None
        self.request = None
        return request


class PeakReader:
    """The runtime's peak RSS (VmHWM, KiB; 0 once it is gone), from its ``/proc`` status file
    kept open and reread in place."""

    def __init__(self, pid: int = 0) -> None:
        try:
            self._fd = os.open(f"/proc/{pid}/status", os.O_RDONLY) if pid else -1
        except OSError:
            self._fd = -1

    def __call__(self) -> int:
        try:
            data = os.pread(self._fd, 4096, 0)
            at = data.index(b"VmHWM:")
            return int(data[at + 6 : data.index(b"kB", at)])
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _child_setup() -> None:
    """In the runtime's process before its exec: die with the agent, and take Ctrl-C as a
    process normally does (the agent ignores it, and an ignored signal stays so across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # ignored by an agent that stopped a runtime
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Bridge:
    """One environment of a foreign runtime: the engine's socket on one side, the Runtime
    API and the runtime's process on the other, served by one select loop."""

    def __init__(self, sock: socket.socket, cfg: dict[str, Any]) -> None:
        self.sock = sock
        self.cfg = cfg
        self.agent = Agent(cfg)
        self.exchange = Exchange(self._exchange_event)
        self.listener: socket.socket | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.selector = selectors.DefaultSelector()
        self._decoder = P.Decoder()
        self._running: Invocation | None = None
        self._parked: list[Connection] = []
        self._connections: set[Connection] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._exit_code: int | None = None
        self._peak = PeakReader()
        self._watcher: threading.Thread | None = None
        #: the invocation a runtime that exited before taking it was started again for
        self._respawned: Invocation | None = None
        self._retaken: Invocation | None = None
        self._t0 = 0
        self._started = 0
        self.initialized = False
        #: the agent's exit status, once the loop is to end
        self.done: int | None = None

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
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # a runtime restarted in the same container binds 9001 again past old TIME_WAITs
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", cfg.get("runtime_api_port", 0)))
            listener.listen(16)
        except OSError as exc:
            listener.close()
            return error_body("Runtime.Unknown", f"Error: the Runtime API cannot listen: {exc}")
        listener.setblocking(False)
        self.listener = listener
        self.port = listener.getsockname()[1]
        return self.spawn()

    def spawn(self) -> bytes | None:
        """Start the runtime (a thread waits for its exit); the init error document when it
        cannot start."""
        cfg = self.cfg
        environ = dict(os.environ)
        environ["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.port}"
        if not str(cfg.get("runtime", "")).startswith("nodejs"):
            # Lambda defines it for its managed runtimes only, none for provided ones
            environ.pop("AWS_EXECUTION_ENV", None)
        argv = list(cfg["bootstrap"])
        path = argv[0] if argv else ""
        cwd = cfg.get("runtime_cwd") or cfg["task_root"]
        if not argv:
            return error_body("Runtime.InvalidEntrypoint", "Error: no entrypoint and no command")
        if not os.path.isdir(cwd):
            return error_body("Runtime.InvalidWorkingDir", f"Error: chdir {cwd}: no such directory")
        try:
            # no other thread runs (the exit watcher of a runtime started before has ended),
            # so the child's pre-exec step is safe
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                preexec_fn=_child_setup,
            )
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            return error_body("Runtime.InvalidEntrypoint", f"Error: fork/exec {path}: {reason}")
        self._peak.close()
        self._peak = PeakReader(self.proc.pid)
        self._exit_code = None
        watcher = self._watcher = threading.Thread(
            target=self._watch, args=(self.proc,), name="runtime-exit", daemon=True
        )
        watcher.start()
        return None

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        self._exit_code = proc.wait()
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve the environment; returns the agent's exit status (the runtime's, if it died)."""
        self._started = P_ORIGIN()
        self.setup()
        failure = self.launch()
        if failure is not None:
            self._send(P.encode(P.INIT_ERROR, (failure, self.agent.take_log(INIT_LOG_CAP)), 0))
            self._close_listener()
            return 1
        assert self.listener is not None
        selector = self.selector
        selector.register(self.sock, selectors.EVENT_READ, self._engine_readable)
        selector.register(self._wake_r, selectors.EVENT_READ, self._woken)
        selector.register(self.listener, selectors.EVENT_READ, self._accept)
        while True:
            for key, mask in selector.select():
                key.data(key, mask)
                done = self._finished()
                if done is not None:
                    return done

    def _finished(self) -> int | None:
        """The agent's exit status once the loop is to end (a handler set it)."""
        return self.done

    def _engine_readable(self, key: selectors.SelectorKey, mask: int) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the engine closed the socket: the environment stops
            self._end_runtime()
            self.done = 0
            return
        for frame in self._decoder.feed(data):
            self._invoke(frame)

    def _woken(self, key: selectors.SelectorKey, mask: int) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        if self._exit_code is not None:
            self.done = self._woken_exit(self._exit_code)

    def _accept(self, key: selectors.SelectorKey, mask: int) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # out of descriptors, say: the runtime's connect fails and it tells
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock)
        self._connections.add(conn)
        self.selector.register(sock, selectors.EVENT_READ, lambda k, m: self._io(conn, m))

    # -- the engine's side -----------------------------------------------------------------

    def _invoke(self, frame: P.Frame) -> None:
        if frame.kind != P.INVOKE or self._running is not None:
            raise P.ProtocolError(f"runtime bridge expected INVOKE, got {frame!r}")
        invocation = Invocation.from_frame(frame, self.cfg["invoked_function_arn"])
        self._running = invocation
        self._t0 = P_ORIGIN()
        self.exchange.start(invocation)
        self._serve_parked()

    def _exchange_event(self, event: tuple[Any, ...]) -> None:
        if event[0] == "ready" and not self.initialized:  # the first /next ends init
            self.initialized = True
            took = P_ORIGIN() - self._started
            self._send(P.encode(P.INIT_OK, (b"",), took, self._peak()))

    def _answer(self, request_id: str, kind: int, body: bytes, flags: int = 0) -> None:
        if self._running is None or self._running.request_id != request_id:
            return  # the exchange already refused it
        self._running = None
        if self._respawned is not None and self._respawned.request_id == request_id:
            flags |= P.REINIT
        duration = P_ORIGIN() - self._t0
        rid = request_id.encode()
        room = P.MAX_BODY - 12 - len(rid) - len(body)
        log = self.agent.take_log(max(0, min(self.agent.log_cap, room)))
        self._send(P.encode(kind, (rid, body, log), duration, self._peak(), flags))

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the engine is gone; the socket's end tells the loop

    # -- the runtime's side ----------------------------------------------------------------

    def _io(self, conn: Connection, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if mask & selectors.EVENT_READ and conn in self._connections:
            try:
                data = conn.sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(conn)
                return
            conn.buf += data
            self._serve(conn)

    def _serve(self, conn: Connection) -> None:
        """Handle the connection's whole requests in order, up to a parked ``/next``."""
        while conn.parked is None and not conn.closing and conn in self._connections:
            try:
                request = conn.next_request()
            except BadRequest as exc:
                conn.closing = True
                self._write(conn, answer(exc.status, exc.body))
                return
            if request is None:
                break
            if not request.keep_alive:
                conn.closing = True
            self._route(conn, request)
            if self.done is not None:
                return
        if conn.out and conn in self._connections:
            self._flush(conn)

    def _route(self, conn: Connection, request: Request) -> None:
        path, method = request.path, request.method
        match = _INVOCATION.match(path)
        if path == NEXT:
            if method != "GET":
                self._write(conn, answer(405, b"", TEXT))
            else:
                conn.parked = request
                self._parked.append(conn)
                self._serve_parked(resume=False)  # this connection's loop reads on
        elif match or path == INIT_ERROR:
            if method != "POST":
                self._write(conn, answer(405, b"", TEXT))
            elif match:
                self._invocation(conn, request, match.group(1), match.group(2))
            else:
                self._init_error(conn, request)
        else:
            self._write(conn, answer(404, NOT_FOUND, TEXT, with_body=method != "HEAD"))

    def _serve_parked(self, resume: bool = True) -> None:
        """Answer the parked ``/next``s the exchange has an invocation (or a refusal) for;
        with ``resume``, then read on what each connection sent after its ``/next``."""
        while self._parked:
            conn = self._parked[0]
            invocation = self.exchange.next()
            if invocation is None and self.exchange.state != CLOSED:
                return
            self._parked.pop(0)
            conn.parked = None
            if invocation is None:
                conn.closing = True
                self._write(conn, answer(500, CONTAINER_ERROR))
            else:
                if invocation is self._respawned and self._retaken is not invocation:
                    self._retaken = invocation  # its duration counts from here: init before
                    self._t0 = P_ORIGIN()
                self._write(conn, answer(200, invocation.payload, JSON, invocation.headers))
            if resume:
                self._serve(conn)

    def _invocation(self, conn: Connection, request: Request, request_id: str, what: str) -> None:
        target = "InvocationResponse" if what == "response" else "InvocationErrorResponse"
        refused = self.exchange.finish(request_id, target)
        if refused is not None:
            self._write(conn, answer(400 if refused is INVALID_ID else 403, refused))
            return
        headers = request.headers
        mode = headers.get("lambda-runtime-function-response-mode")
        if what == "error":
            document = error_document(
                headers.get("lambda-runtime-function-error-type"), request.body
            )
            self._answer(request_id, P.ERROR, document)
            self._write(conn, answer(202, ACCEPTED))
        elif mode is not None and mode.lower() != "streaming":
            message = f"Invalid function response mode: {mode}"
            document = error_body("Runtime.InvalidResponseModeHeader", message)
            self._answer(request_id, P.ERROR, document)
            self._write(conn, answer(400, BAD_MODE))
        elif request.size > LIMIT:
            self._answer(request_id, P.ERROR, too_large_error(request.size))
            self._write(conn, answer(413, TOO_LARGE))
        elif "lambda-runtime-function-error-type" in request.trailers:
            self._answer(request_id, P.ERROR, _stream_error(request.trailers))
            self._write(conn, answer(202, ACCEPTED))
        else:
            self._answer(request_id, P.RESULT, request.body)
            self._write(conn, answer(202, ACCEPTED))

    def _init_error(self, conn: Connection, request: Request) -> None:
        refused = self.exchange.fail_init()
        if refused is not None:
            self._write(conn, answer(403, refused))
            return
        header = request.headers.get("lambda-runtime-function-error-type")
        document = error_document(header, request.body)
        self._write(conn, answer(202, ACCEPTED))
        self._flush(conn)  # the runtime reads its 202, then exits or is stopped
        if self._running is not None:  # started again for a call: that call's error
            self._answer(self._running.request_id, P.ERROR, document, P.FATAL)
        else:
            log = self.agent.take_log(INIT_LOG_CAP)
            self._send(P.encode(P.INIT_ERROR, (document, log), P_ORIGIN() - self._started))
        self._end_runtime()
        self.done = 1

    # -- writing and closing ---------------------------------------------------------------

    def _write(self, conn: Connection, data: bytes) -> None:
        conn.out += data
        self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        if conn not in self._connections:
            return
        try:
            while conn.out:
                sent = conn.sock.send(conn.out)
                del conn.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if conn.out or conn.writing:
            conn.writing = bool(conn.out)
            self.selector.modify(conn.sock, want, lambda k, m: self._io(conn, m))
        if not conn.out and conn.closing:
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        if conn in self._parked:
            self._parked.remove(conn)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _close_listener(self) -> None:
        for conn in list(self._connections):
            self._drop(conn)
        if self.listener is not None:
            try:
                self.selector.unregister(self.listener)
            except (KeyError, ValueError):
                pass
            self.listener.close()
            self.listener = None

    # -- the end ---------------------------------------------------------------------------

    def _woken_exit(self, code: int) -> int | None:
        """The runtime ended.  If it had answered its last invocation and the engine's next one
        had not reached it yet (a runtime that handles one event and exits, say), it is
        started again for that one, once, as Lambda starts a new runtime then: the call is not
        lost to an exit it never saw.  Otherwise the agent ends (None: it goes on)."""
        running = self._running
        if (
            self.initialized
            and running is not None
            and self.exchange.pending is running
            and self._respawned is not running
        ):
            self._respawned = running
            self._stop_group()
            for conn in list(self._connections):
                self._drop(conn)
            self.exchange = Exchange(self._exchange_event)
            self.exchange.start(running)
            if self._watcher is not None:
                self._watcher.join()
            failure = self.spawn()
            if failure is None:
                return None
            self._answer(running.request_id, P.ERROR, failure, P.FATAL)
            self._end_runtime()
            return 1
        return self._runtime_exited(code)

    def _runtime_exited(self, code: int) -> int:
        """The runtime ended: before its first ``/next`` that is an init error; after it, the
        agent ends with the same status, and the engine answers the call Runtime.ExitError."""
        self._end_runtime()
        if not self.initialized:
            how = f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            body = error_body("Runtime.ExitError", f"Error: Runtime exited with error: {how}")
            took = P_ORIGIN() - self._started
            self._send(P.encode(P.INIT_ERROR, (body, self.agent.take_log(INIT_LOG_CAP)), took))
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        return code

    def _end_runtime(self) -> None:
        """Stop the runtime and what it started (SIGTERM to our process group, then SIGKILL);
        a parked ``/next`` is told the container is going."""
        self.exchange.close()
        self._serve_parked(resume=False)
        self._stop_group()
        self._close_listener()
        self._peak.close()

    def _stop_group(self) -> None:
        """SIGTERM to the runtime and whatever it started (our process group), then SIGKILL
        to the runtime if it outlives STOP_GRACE_S."""
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


def _stream_error(trailers: dict[str, str]) -> bytes:
    """A streamed response that failed midway: its trailers name the error."""
    try:
        text = base64.b64decode(trailers.get("lambda-runtime-function-error-body", ""))
        message = text.decode(errors="replace")
    except (binascii.Error, ValueError):
        message = trailers.get("lambda-runtime-function-error-body", "")
    return error_body(valid_error_type(trailers["lambda-runtime-function-error-type"]), message)


def run(sock: socket.socket, cfg: dict[str, Any]) -> int:
    """Serve a foreign runtime's environment on the engine's stream socket ``sock``."""
    return Bridge(sock, cfg).run()
