"""The agent's runtime: initialize a function, serve invocations, fork warm workers.

Three modes, each started by the engine with one inherited socket:

* ``worker``: an INIT frame names the handler; the agent imports it (Lambda's init phase),
  answers INIT_OK or INIT_ERROR, then serves INVOKE frames one at a time until the socket
  closes.
* ``template``: the same init, then the process waits for FORK frames on a seqpacket socket.
  Each FORK carries a fresh socket; a forked child becomes a worker that is already
  initialized, so a cold start costs a fork and a handshake, not an interpreter and an import.
  The template reaps its children and reports each exit status (EXITED), since the engine
  is not their parent.
* ``sandbox``: a container's first process.  It imports nothing and forks on FORK as the
  template does; each child waits for its own INIT and then is a worker.  A killed worker is
  replaced in the same container, and a sandbox started ahead of demand can take any function.

Everything the handler writes to stdout and stderr goes to a per-environment log file; after
each invocation the agent reads what was written, sends it with the result and truncates the
file, so the output of concurrent invocations (in different workers) never mixes.  A log longer
than the cap, or than the frame has room for beside the payload, keeps its end.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any, Callable

from . import protocol as P

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _ORJSON_OPTS = (
        orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_SUBCLASS
        | orjson.OPT_NON_STR_KEYS
    )

    def _fast_dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=_ORJSON_OPTS)

except ImportError:  # pragma: no cover - exercised in images without orjson
    _loads = json.loads
    _fast_dumps = None  # type: ignore[assignment]

RESPONSE_LIMIT = P.RESPONSE_LIMIT
#: An init phase's log and error document travel in one control datagram in template mode
#: (INIT_OK or INIT_ERROR): together, with the header, they stay under MAX_DATAGRAM.
INIT_LOG_CAP = 64 * 1024
INIT_ERROR_CAP = 32 * 1024
#: an error type is a class name; one long enough to crowd out the message is cut
TYPE_CAP = 256
ORIGIN = time.perf_counter_ns
#: Lambda's answer for a result over its limit: no request id, no stack trace
TOO_LARGE_BODY = json.dumps(
    {
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        f"({RESPONSE_LIMIT} bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
).encode()


class _LambdaEncoder(json.JSONEncoder):
    """Lambda's Python runtime encodes Decimal as a number and nothing else beyond json."""

    def default(self, o: Any) -> Any:
        import decimal

        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


def marshal(result: Any) -> bytes:
    """JSON-encode a handler's result the way Lambda's runtime accepts it."""
    if _fast_dumps is not None:
        try:
            return _fast_dumps(result)
        except TypeError:
            pass  # let json name the offending type, as Lambda's message does
    return json.dumps(result, cls=_LambdaEncoder, separators=(",", ":")).encode()


def error_body(
    error_type: str,
    message: str,
    request_id: str = "",
    stack: list[str] | None = None,
    cap: int | None = None,
) -> bytes:
    """Lambda's error document.  With ``cap``, one longer than ``cap`` bytes is cut to fit:
    the type and message keep their heads, the stack trace its innermost frames, and each cut
    says how much it dropped.  The request id is kept whole."""
    body: dict[str, Any] = {"errorMessage": message, "errorType": error_type}
    if request_id:
        body["requestId"] = request_id
    body["stackTrace"] = stack or []
    data = json.dumps(body).encode()
    if cap is None or len(data) <= cap:
        return data
    return _fit_error(body, cap)


def _fit_error(body: dict[str, Any], cap: int) -> bytes:
    message = body["errorMessage"]
    body["errorType"] = _head(body["errorType"], TYPE_CAP)
    stack = body["stackTrace"]
    body["stackTrace"] = []
    # a short message leaves the stack trace all the room; a long one leaves it a quarter
    room = max(cap - len(json.dumps(body)) + 2, cap // 4)
    body["stackTrace"] = _innermost(stack, room)
    body["errorMessage"] = ""
    room = cap - len(json.dumps(body)) + 2  # the empty message's quotes are counted already
    body["errorMessage"] = _head(message, room)
    return json.dumps(body).encode()


def _head(text: str, size: int) -> str:
    """The start of ``text``, marked as cut, whose JSON string is at most ``size`` bytes."""
    if len(json.dumps(text)) <= size:
        return text
    keep = len(text)
    while keep > 0:
        marker = f" [... {len(text) - keep} characters dropped ...]"
        cost = len(json.dumps(text[:keep] + marker))
        if cost <= size:
            return text[:keep] + marker
        # escapes make a character cost up to 12 bytes: shrink in proportion, at least by one
        keep = min(keep - 1, keep * size // cost)
    return ""


def _innermost(frames: list[str], size: int) -> list[str]:
    """The last of ``frames`` (where the error was raised) whose JSON list fits ``size``."""
    kept: list[str] = []
    used = len(json.dumps([f"[... {len(frames)} frames dropped ...]"]))
    for frame in reversed(frames):
        frame = _head(frame, size // 4)  # one huge frame does not crowd out the others
        cost = len(json.dumps(frame)) + 2
        if used + cost > size:
            break
        kept.append(frame)
        used += cost
    kept.reverse()
    if len(kept) < len(frames):
        kept.insert(0, f"[... {len(frames) - len(kept)} frames dropped ...]")
    return kept


def _describe(exc: BaseException, skip: int) -> tuple[str, str, list[str]]:
    frames = traceback.extract_tb(exc.__traceback__)[skip:]
    return type(exc).__name__, str(exc), traceback.format_list(frames)


def exception_body(exc: BaseException, request_id: str = "", skip: int = 1) -> bytes:
    """Lambda's error document for an exception: message, type, formatted frames."""
    error_type, message, stack = _describe(exc, skip)
    return error_body(error_type, message, request_id, stack)


def _dropped(size: int) -> bytes:
    return b"[... %d bytes of log dropped ...]\n" % size


def _log_unhandled(exc: BaseException) -> None:
    """Lambda writes a handler's exception into the function's log as ``[ERROR] Type: message``."""
    frames = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
    sys.stderr.write(
        f"[ERROR] {type(exc).__name__}: {exc}\n"
        f"Traceback (most recent call last):\n{''.join(frames)}"
    )


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data: dict[str, Any] | None) -> None:
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class Client:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, data: dict[str, Any]) -> None:
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, data: dict[str, Any]) -> None:
        client = data.get("client")
        self.client = Client(client) if client else None
        self.custom = data.get("custom")
        self.env = data.get("env")


class LambdaContext:
    """The context object of Lambda's Python runtime."""

    __slots__ = (
        "_deadline_ms",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    )

    def __init__(
        self,
        fixed: tuple[str, str, str, str, str, str],
        request_id: str,
        deadline_ms: int,
        extra: bytes,
    ) -> None:
        """``fixed``: what every invocation of this worker shares (``static_fields(cfg)``)."""
        self.aws_request_id = request_id
        (
            self.function_name,
            self.function_version,
            self.invoked_function_arn,
            self.memory_limit_in_mb,
            self.log_group_name,
            self.log_stream_name,
        ) = fixed
        self._deadline_ms = deadline_ms
        if extra:
            data = json.loads(extra)
            self.identity = CognitoIdentity(data.get("identity"))
            client_context = data.get("client_context")
            self.client_context = ClientContext(client_context) if client_context else None
            # the ARN as invoked (an alias's, ...:$LATEST), when it is not INIT's
            self.invoked_function_arn = data.get("invoked_function_arn", self.invoked_function_arn)
        else:
            self.identity = CognitoIdentity(None)
            self.client_context = None

    @staticmethod
    def static_fields(cfg: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
        return (
            cfg["function_name"],
            cfg["function_version"],
            cfg["invoked_function_arn"],
            str(cfg["memory_mb"]),
            cfg["log_group_name"],
            cfg["log_stream_name"],
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


class _RequestIdFilter(logging.Filter):
    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.agent.request_id
        return True


def _install_logging(agent: Agent) -> None:
    """Lambda's root-logger handler: level, UTC time, request id, message."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter(agent))
    logging.getLogger().addHandler(handler)


class InitError(Exception):
    """The init phase failed; ``document(cap)`` is Lambda's error document for it."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack

    def document(self, cap: int) -> bytes:
        return error_body(self.error_type, self.message, stack=self.stack, cap=cap)


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """Import ``module.function`` (or ``path/module.function``) as Lambda's runtime does."""
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError:
        raise InitError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{spec}': not enough values to unpack (expected 2, got 1)",
        ) from None
    modname = modname.replace("/", ".")
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}"
        ) from None
    except SyntaxError as exc:
        raise InitError(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{modname}': {exc}",
            traceback.format_exception_only(type(exc), exc),
        ) from None
    except Exception as exc:
        raise InitError(*_describe(exc, skip=0)) from None
    handler = getattr(module, fname, None)
    if handler is None:
        raise InitError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        )
    return handler  # type: ignore[no-any-return]


class Agent:
    """One process's state: its configuration, handler and log file."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.handler: Callable[[Any, Any], Any] | None = None
        self.request_id = ""
        self.log_cap = int(cfg.get("log_cap", 1024 * 1024))
        self._log_read = -1
        self.context_fields = LambdaContext.static_fields(cfg)

    # -- init ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Environment, working directory, output capture and logging, before the import."""
        cfg = self.cfg
        os.environ.update(cfg["environ"])
        root = cfg["task_root"]
        if root not in sys.path:
            sys.path.insert(0, root)
        os.chdir(root)
        self.capture(cfg["log_path"])
        _install_logging(self)

    def capture(self, path: str) -> None:
        """Point fds 1 and 2 (and sys.stdout/err) at ``path``, truncated."""
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        if self._log_read >= 0:
            os.close(self._log_read)
        self._log_read = os.open(path, os.O_RDONLY)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True)

    def take_log(self, cap: int) -> bytes:
        """What the function wrote since the last call, at most ``cap`` bytes, then reset.

        A longer log keeps its end (what led up to the result and the REPORT line) behind a
        line saying how many bytes were dropped; that line counts towards ``cap``."""
        sys.stdout.flush()
        sys.stderr.flush()
        size = os.fstat(1).st_size
        if not size:
            return b""
        if size <= cap:
            data = os.pread(self._log_read, size, 0)
        else:
            # the line for ``size`` dropped bytes is at least as long as the one we write
            keep = max(0, cap - len(_dropped(size)))
            data = _dropped(size - keep) + os.pread(self._log_read, keep, size - keep)
            if len(data) > cap:  # a cap too small for the line itself
                data = b""
        os.ftruncate(1, 0)
        return data

    def init(self) -> tuple[int, bytes, bytes | None]:
        """Import the handler: (duration ns, init log, error body or None)."""
        t0 = ORIGIN()
        error = None
        try:
            self.handler = load_handler(self.cfg["handler"])
        except InitError as exc:
            error = exc.document(INIT_ERROR_CAP)
        return ORIGIN() - t0, self.take_log(INIT_LOG_CAP), error

    def become_worker(self, env: dict[str, Any]) -> None:
        """Per-environment settings, applied in a forked child or a spawned worker."""
        os.environ.update(env["environ"])
        self.cfg["log_stream_name"] = env["environ"].get(
            "AWS_LAMBDA_LOG_STREAM_NAME", self.cfg["log_stream_name"]
        )
        self.context_fields = LambdaContext.static_fields(self.cfg)
        if "tempfile" in sys.modules:
            sys.modules["tempfile"].tempdir = None  # type: ignore[attr-defined]
        self.capture(env["log_path"])
        limit = env.get("memory_limit_bytes")
        if limit:
            with open("/proc/self/statm", "rb") as f:
                vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limit = max(int(limit), vsize + 32 * 1024 * 1024)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    # -- invocations -----------------------------------------------------------------------

    def serve(self, sock: socket.socket) -> None:
        """Serve INVOKE frames until the engine closes the socket."""
        reader = sock.makefile("rb", buffering=1 << 16)
        read = reader.read
        send = sock.sendall
        while True:
            try:
                frame = P.read_frame(read)
            except EOFError:
                return
            if frame.kind != P.INVOKE:
                raise P.ProtocolError(f"worker expected INVOKE, got {P.KIND_NAMES[frame.kind]}")
            reply, fatal = self.invoke(frame)
            send(reply)
            if fatal:
                os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would

    def invoke(self, frame: P.Frame) -> tuple[bytes, bool]:
        """Run one invocation; returns the reply frame and whether the worker must die."""
        rid_b, payload, extra = frame.fields
        rid = self.request_id = rid_b.decode()
        kind = P.RESULT
        flags = 0
        t0 = ORIGIN()
        try:
            context = LambdaContext(self.context_fields, rid, frame.a, extra)
            result = self.handler(_loads(payload), context)  # type: ignore[misc]
            try:
                body = marshal(result)
            except (TypeError, ValueError) as exc:
                kind, body = (
                    P.ERROR,
                    error_body("Runtime.MarshalError", f"Unable to marshal response: {exc}", rid),
                )
        except MemoryError:
            kind, flags = P.ERROR, P.FATAL
            body = error_body(
                "Runtime.OutOfMemory",
                f"RequestId: {rid} Error: Runtime exited with error: signal: killed",
            )
        except Exception as exc:
            kind, body = P.ERROR, exception_body(exc, rid)
            _log_unhandled(exc)
        duration = ORIGIN() - t0
        if len(body) > RESPONSE_LIMIT:
            kind, body = P.ERROR, TOO_LARGE_BODY
        # the log gets what the payload leaves of the frame, whatever the configured cap
        room = P.MAX_BODY - 12 - len(rid_b) - len(body)
        log = self.take_log(max(0, min(self.log_cap, room)))
        self.request_id = ""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return P.encode(kind, (rid_b, body, log), duration, peak, flags), bool(flags)

    # -- template --------------------------------------------------------------------------

    def serve_template(self, ctrl: socket.socket) -> None:
        """Fork an initialized worker per FORK frame; report the exit of every child."""
        gc.freeze()  # keep the collector from touching (and so copying) the template's objects
        serve_forks(ctrl, self._forked_worker)

    def _forked_worker(self, env: dict[str, Any], sock: socket.socket) -> None:
        self.become_worker(env)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sock.sendall(P.encode(P.INIT_OK, (b"",), 0, peak))
        self.serve(sock)


def serve_forks(
    ctrl: socket.socket, run_child: Callable[[dict[str, Any], socket.socket], None]
) -> None:
    """Fork a child per FORK frame on the seqpacket ``ctrl``: it runs ``run_child(env, sock)``
    on the frame's socket, then exits; FORKED answers with its pid, EXITED reports its end
    (the engine is not the children's parent, so it cannot wait for them itself)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    while True:
        readable, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
        if wake_r in readable:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
            _reap(ctrl)
        if ctrl.fileno() in readable:
            msg, fds = P.recv_datagram(ctrl, 1)
            if not msg:
                return
            frame = P.decode(msg)
            if frame.kind != P.FORK or len(fds) != 1:
                raise P.ProtocolError(f"expected FORK with one fd, got {frame!r}")
            _fork(ctrl, frame, fds[0], (wake_r, wake_w), run_child)


def _fork(
    ctrl: socket.socket,
    frame: P.Frame,
    fd: int,
    wake: tuple[int, int],
    run_child: Callable[[dict[str, Any], socket.socket], None],
) -> None:
    env = json.loads(frame.fields[0])
    group = bool(env.pop("group", False))
    pid = os.fork()
    if pid:
        os.close(fd)
        if group:  # in both processes, so the group exists before FORKED says the pid
            _own_group(pid)
        ctrl.send(P.encode(P.FORKED, (), frame.a, pid))
        return
    code = 0
    try:
        if group:
            _own_group(0)
        _die_with_parent()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for wfd in wake:
            os.close(wfd)
        ctrl.close()
        run_child(env, socket.socket(fileno=fd))
    except SystemExit as exc:  # sys.exit() in the handler: exit as the interpreter would
        code = _exit_status(exc)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        ctrl.send(P.encode(P.EXITED, (), pid, status))


def _exit_status(exc: SystemExit) -> int:
    """The status an interpreter exits with for ``exc`` (None: 0, a number, else printed: 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _own_group(pid: int) -> None:
    """Make ``pid`` (0: this process) the leader of a process group of its own."""
    try:
        os.setpgid(pid, 0)
    except OSError:
        pass  # the child has done it already, or is gone


def _die_with_parent() -> None:
    """Ask the kernel to kill us when the process that started us dies (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    """``__main__.py --fd N --mode worker|template|sandbox [--engine-pid P]``."""
    # The engine owns this process's lifetime.  A Ctrl-C at a terminal reaches the whole
    # foreground process group: it is for the engine (which drains, then stops us), not for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = dict(zip(argv[::2], argv[1::2]))
    fd = int(args["--fd"])
    mode = args.get("--mode", "worker")
    _die_with_parent()
    if mode == "worker":
        return _run_worker(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd)
    P.widen_datagram_buffers(sock)
    if mode == "sandbox":
        serve_forks(sock, _sandboxed)
        return 0
    agent, took, log, error = _initialize(P.decode(P.recv_datagram(sock)[0]))
    if error is not None:
        sock.send(P.encode(P.INIT_ERROR, (error, log), took))
        return 1
    sock.send(P.encode(P.INIT_OK, (log,), took, 0))
    agent.serve_template(sock)
    return 0


def _init_config(frame: P.Frame) -> dict[str, Any]:
    if frame.kind != P.INIT:
        raise P.ProtocolError(f"expected INIT, got {frame!r}")
    return json.loads(frame.fields[0])  # type: ignore[no-any-return]


def _initialize(frame: P.Frame) -> tuple[Agent, int, bytes, bytes | None]:
    """Lambda's init phase for an INIT frame: the agent, its duration, log and error body."""
    return _initialize_config(_init_config(frame))


def _initialize_config(cfg: dict[str, Any]) -> tuple[Agent, int, bytes, bytes | None]:
    agent = Agent(cfg)
    agent.setup()
    took, log, error = agent.init()
    return agent, took, log, error


def _run_worker(sock: socket.socket) -> int:
    """INIT from the stream socket, then serve invocations until it closes.  A config with a
    ``bootstrap`` is a custom runtime's: the agent serves it the Lambda Runtime API instead."""
    cfg = _init_config(P.read_frame(sock.makefile("rb", buffering=0).read))
    if cfg.get("bootstrap"):
        from . import runtime_api

        return runtime_api.run(sock, cfg)
    agent, took, log, error = _initialize_config(cfg)
    if error is not None:
        sock.sendall(P.encode(P.INIT_ERROR, (error, log), took))
        return 1
    agent.become_worker(agent.cfg["env"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sock.sendall(P.encode(P.INIT_OK, (log,), took, peak))
    agent.serve(sock)
    return 0


def _sandboxed(env: dict[str, Any], sock: socket.socket) -> None:
    """A child of a sandbox (a container's first process): a worker that waits for its INIT.

    The sandbox never imports a function, so one started ahead of demand (a stem cell) can
    become any function's environment, and a worker killed in it is replaced by a fresh one
    in the same container (its /tmp intact)."""
    code = _run_worker(sock)
    if code:
        raise SystemExit(code)
