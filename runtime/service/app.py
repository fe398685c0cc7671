"""The standalone invoker service: the aiohttp application and ``warmstart serve``'s lifecycle.

    create_app(engine, config, background=..., authenticate=..., front_door=...)
      /2015-03-31/… /2016-08-19/… /2017-10-31/… /2019-09-30/…   Lambda API (lambda_api.py)
      /warmstart/logs/{name}                                    recent log text, or followed
      /healthz  /metrics                                        health, Prometheus text
      POST /v1/submitjob … /v1/deletejobqueue                   AWS Batch API (batch_api.py)
      POST / with X-Amz-Target                                  JSON 1.1 APIs: ECS, EventBridge
      anything else                                             front_door (API Gateway routes)

    serve(config): engine up, functions registered, background up, listen; on SIGTERM/SIGINT
    stop accepting, let in-flight requests and invocations finish (bounded), stop the
    background, stop every environment, return 0.

The background (``Background``, beside the HTTP front while the service runs): the durable
store in the data directory (``[batch] data_dir``, else ``runtime.batch.store``'s default),
the batch queue as the engine's backlog (Event invocations are stored before 202), the
async-invocation dispatcher, and the schedule rules with their runner.  It is started
first and the app is made over it: the APIs get their stores when they are made.  An app made
without one answers the operations that need a store with the API's internal error.

Hooks for the modules wired in by the integration: ``authenticate`` (``async (request, body)``,
raising an error with ``.code``, ``.message`` and ``.status``: ``protocol.Authenticate``) runs
before every AWS-style operation; ``front_door`` is an aiohttp handler for every path outside
the reserved ones.
Both find the engine, config and metrics under ``ENGINE``, ``CONFIG`` and ``METRICS``.

Two middlewares go first.  With ``[auth]`` keys, the SigV4 ``Authorization`` header of every
AWS-style request is checked as soon as the headers are in (scope: the API's service and the
pool's region), before any body is read; the body's hash is checked after, by the hook.  A
synchronous Invoke whose client disconnects is cancelled (the engine withdraws a call still
queued); every other handler finishes, so writes are never cut halfway.  The connections
themselves (timeouts, cap, one-line bad requests) are ``connections.ServiceRunner``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..asyncinvoke.backlog import EventBacklog
from ..asyncinvoke.dispatch import NODE_PREFIX, EventDispatcher
from ..asyncinvoke.store import EventStore
from ..batch.queue import BatchQueue
from ..batch.store import STORE_FILE, default_data_dir
from ..cluster.node import ClusterNode
from ..cluster.tokens import ACCOUNT, RedisTokens, TokenPool
from ..configfile import ConfigFile
from ..ecs import Ecs
from ..engine import Engine
from ..errors import ResourceNotFoundException
from ..node import local_node_id
from ..schedules.runner import ScheduleRunner, sync_config
from ..schedules.store import Rules
from ..sqlite import offload
from ..stamps import request_id
from ..stores import Stores, open_stores
from . import ecs_api, events_api, gateway
from .auth import AuthError, check_authorization
from .batch_api import PATHS as BATCH_PATHS
from .batch_api import BatchApi
from .connections import ServiceRunner, cancelled_on_disconnect
from .ecs_api import serve_ecs
from .events_api import EventsApi, serve_events
from .function_sync import FunctionSync
from .json_rpc import CONTENT_TYPE as JSON_RPC
from .json_rpc import TARGET_HEADER, JsonRpc, is_json_rpc
from .lambda_api import LambdaApi
from .metrics import CONTENT_TYPE, ServiceMetrics
from .protocol import Authenticate, UnknownOperationException
from .shapes import JSON, error_response

__all__ = [
    "API",
    "BACKGROUND",
    "BATCH",
    "CONFIG",
    "ECS",
    "ENGINE",
    "EVENTS",
    "METRICS",
    "AppFactory",
    "Background",
    "FrontDoor",
    "create_app",
    "is_reserved_path",
    "running",
    "serve",
]

FrontDoor = gateway.FrontDoor

ENGINE = web.AppKey("warmstart.engine", Engine)
CONFIG = web.AppKey("warmstart.config", ConfigFile)
METRICS = web.AppKey("warmstart.metrics", ServiceMetrics)
API = web.AppKey("warmstart.lambda_api", LambdaApi)
ECS = web.AppKey("warmstart.ecs", Ecs)
EVENTS = web.AppKey("warmstart.events", EventsApi)
BATCH = web.AppKey("warmstart.batch_api", BatchApi)

#: AWS-style API paths start with an API version date: /2015-03-31/, /2018-06-01/, …
_VERSIONED = re.compile(r"^/\d{4}-\d{2}-\d{2}(?:/|$)")
_EXACT = frozenset({"/healthz", "/metrics"})
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def is_reserved_path(path: str) -> bool:
    """Paths the service answers itself; everything else belongs to the front door."""
    return (
        path in _EXACT
        or path in BATCH_PATHS
        or path.startswith("/warmstart/")
        or _VERSIONED.match(path) is not None
    )


def create_app(
    engine: Engine,
    config: ConfigFile | None = None,
    *,
    background: Background | None = None,
    authenticate: Authenticate | None = None,
    front_door: FrontDoor | None = None,
) -> web.Application:
    """The service's application over a started ``engine`` and ``background``.

    ``config`` gives the service limits (``[service]``), the SigV4 keys (``[auth]``) and the
    API Gateway routes (``[routes]``); functions are not registered here.  ``background``
    (started) gives the APIs their stores: the event invoke configs, the schedule rules and
    the batch queue; without it their operations answer the API's internal error.
    ``authenticate`` (by default SigV4 when keys are configured) runs for every AWS-style
    operation after its body is read (within the limit) and before it acts; ``front_door``
    (by default the config's routes) answers every path that is not reserved
    (``is_reserved_path``).
    """
    config = config if config is not None else ConfigFile("<defaults>")
    if authenticate is None:
        authenticate = gateway.authenticator(config.auth)
    if front_door is None:
        front_door = gateway.front_door(engine, config)
    metrics = ServiceMetrics(engine)
    event_store = background.store if background is not None else None
    api = LambdaApi(engine, config.service, metrics, authenticate, event_store=event_store)
    rpc = JsonRpc(authenticate)
    middlewares: list[Middleware] = [_signed_first(config)] if config.auth.enabled else []
    app = web.Application(middlewares=[*middlewares, _withdrawn_on_disconnect])
    if background is not None:
        app[BACKGROUND] = background
    app[ENGINE] = engine
    app[CONFIG] = config
    app[METRICS] = metrics
    app[API] = api
    app[ECS] = serve_ecs(rpc, config.pool)
    app[EVENTS] = _events_api(rpc, config, background)
    app[BATCH] = batch = _batch_api(background, authenticate)
    app.router.add_routes(api.routes())
    app.router.add_routes(batch.routes())
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/warmstart/nodes", _nodes)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", r"/{tail:[\s\S]*}", _fallback(front_door, rpc))
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_close_api)
    app.on_cleanup.append(_close_ecs)
    return app


def _events_api(rpc: JsonRpc, config: ConfigFile, background: Background | None) -> EventsApi:
    """EventBridge's rules over the background's, its schedule runner woken by changes."""
    if background is None or background.rules is None or background.schedules is None:
        return serve_events(rpc, config.pool)
    return serve_events(rpc, config.pool, background.rules, background.schedules.wake)


def _batch_api(background: Background | None, authenticate: Authenticate | None) -> BatchApi:
    """Batch over the background's queue: its store, its runner told of terminations and
    woken by every operation."""
    queue = background.queue if background is not None else None
    if queue is None:
        return BatchApi(authenticate=authenticate)
    runner = queue.runner
    return BatchApi(queue.store, killer=runner, authenticate=authenticate, on_change=runner.wake)


# -- middlewares ----------------------------------------------------------------------------------


#: the signing name of each JSON 1.1 API, by its target prefix
_RPC_SERVICES = {ecs_api.TARGET_PREFIX: "ecs", events_api.TARGET_PREFIX: "events"}
#: a refused request whose body is declared at most this long is read (and dropped) so the
#: connection stays open; a longer or chunked one is not read: the connection closes
_DRAIN_LIMIT = 65_536


class _Api(NamedTuple):
    """What an AWS-style request addresses: the service its signature must be scoped to (None
    when no API serves it) and whether it speaks JSON 1.1."""

    service: str | None
    json_rpc: bool


def _api_of(request: web.Request) -> _Api | None:
    """The API of ``request``; None for what is not AWS-style (health, metrics, routes).

    ``/warmstart/`` paths are the service's own, signed for ``lambda`` as its CLI does.
    """
    if is_json_rpc(request):
        prefix = request.headers.get(TARGET_HEADER, "").rpartition(".")[0]
        return _Api(_RPC_SERVICES.get(prefix), True)
    path = request.path
    if path in _EXACT or not is_reserved_path(path):
        return None
    return _Api("batch" if path in BATCH_PATHS else "lambda", False)


def _signed_first(config: ConfigFile) -> Middleware:
    """The middleware refusing, before any body is read, an AWS-style request whose
    ``Authorization`` header is missing, malformed, stale, of an unknown key, scoped to another
    service or region, or leaving the body unsigned."""
    keys = dict(config.auth.keys)
    region = config.pool.region

    @web.middleware
    async def signed_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        api = _api_of(request)
        if api is not None:
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
            try:
                check_authorization(
                    headers, keys, datetime.now(timezone.utc), service=api.service, region=region
                )
            except AuthError as err:
                return _refused(request, err, api)
        return await handler(request)

    return signed_first


def _refused(request: web.Request, err: AuthError, api: _Api) -> web.Response:
    """``err`` in the API's error shape; unless the body is small, the connection closes."""
    if api.json_rpc or api.service == "batch":
        body = orjson.dumps({"__type": err.code, "message": err.message})
        headers = {"Content-Type": JSON_RPC if api.json_rpc else JSON, "x-amzn-ErrorType": err.code}
        resp = web.Response(body=body, status=err.status, headers=headers)
    else:
        resp = error_response(err)
    resp.headers["x-amzn-RequestId"] = request_id()
    declared = request.content_length
    if request.body_exists and (declared is None or declared > _DRAIN_LIMIT):
        resp.force_close()
    return resp


@web.middleware
async def _withdrawn_on_disconnect(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A synchronous Invoke only waits for its result: a client gone cancels it.  Nothing
    else is cancelled (CreateFunction, an Event's store, SubmitJob... finish as they began)."""
    api = request.app.get(API)
    route = request.match_info.route
    synchronous = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    if api is None or route.handler != api.invoke or synchronous != "RequestResponse":
        return await handler(request)
    with cancelled_on_disconnect(request):
        return await handler(request)


async def _healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    doc = {"status": "ok", "functions": len(engine.functions())}
    return web.Response(body=orjson.dumps(doc), headers={"Content-Type": JSON})


async def _nodes(request: web.Request) -> web.Response:
    """The live nodes sharing this node's store, with their load as of their last beat."""
    background = request.app.get(BACKGROUND)
    cluster = background.cluster if background is not None else None
    if cluster is None:
        body: dict[str, Any] = {"NodeId": None, "Nodes": []}
    else:
        body = {"NodeId": cluster.id, "Nodes": cluster.describe()}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()  # on the loop thread: engine.stats() is not thread-safe
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _fallback(front_door: FrontDoor | None, rpc: JsonRpc) -> FrontDoor:
    async def fallback(request: web.Request) -> web.StreamResponse:
        if is_json_rpc(request):  # AWS's JSON 1.1 APIs all POST to "/"
            return await rpc.handle(request)
        path = request.path
        if path in _EXACT:
            raise web.HTTPMethodNotAllowed(request.method, ["GET"])
        if is_reserved_path(path):
            return error_response(
                UnknownOperationException(f"No operation at {request.method} {path}", 404)
            )
        if front_door is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return await front_door(request)

    return fallback


async def _end_streams(app: web.Application) -> None:
    app[API].followers.close()


async def _close_api(app: web.Application) -> None:
    await app[API].close()


async def _close_ecs(app: web.Application) -> None:
    await app[ECS].close()


# -- serving --------------------------------------------------------------------------------------


class AppFactory(Protocol):
    """What ``running`` and ``serve`` make the app with (``create_app`` by default): called
    once the engine and the background are started."""

    def __call__(
        self, engine: Engine, config: ConfigFile, /, *, background: Background
    ) -> web.Application: ...


async def start_engine(config: ConfigFile) -> Engine:
    """An engine with the config's pool and every function of the config registered."""
    engine = Engine(config.pool)
    await engine.start()
    try:
        for function in config.functions.values():
            await engine.register(function)
    except BaseException:
        await engine.close()
        raise
    return engine


class Background:
    """What runs beside the HTTP front: the durable stores (:func:`runtime.stores.open_stores`:
    the SQLite file, or the shared Redis of ``[store] url``), the batch queue attached as the
    engine's backlog (``[batch] enabled = false``: an events-only backlog), the dispatcher of
    async invocations, the schedule rules (the config's ``[schedules]`` upserted) and their
    runner. ``close`` stops them in that order's reverse and closes the stores.

    With a shared store every node's work is held under its lease: the dispatcher and the
    batch runner beat every ``lease_s / 4`` and take over the work of nodes silent for
    ``lease_s``.
    """

    def __init__(self, engine: Engine, config: ConfigFile, data_dir: str | None = None) -> None:
        self.engine = engine
        self.config = config
        self.data_dir = Path(data_dir or config.batch.data_dir or default_data_dir())
        self.stores: Stores | None = None
        self.queue: BatchQueue | None = None
        self.backlog: BatchQueue | EventBacklog | None = None
        self.store: EventStore | None = None
        self.rules: Rules | None = None
        self.dispatcher: EventDispatcher | None = None
        self.schedules: ScheduleRunner | None = None
        #: this node's membership and routing (:meth:`join`, once the URL is known)
        self.cluster: ClusterNode | None = None
        #: the cluster-wide concurrency tokens (shared stores only)
        self.tokens: TokenPool | None = None
        #: the store and rule calls of the dispatcher and the schedules: threads of their own,
        #: joined at close (the loop's default executor may be gone by then)
        self.executor: ThreadPoolExecutor | None = None

    @property
    def path(self) -> Path:
        """The SQLite file of the stores (unused with a shared Redis store)."""
        return self.data_dir / STORE_FILE

    @property
    def node_id(self) -> str:
        """This node's id in the store (``[store] node_id``, else ``host/pid/start``)."""
        return self.config.store.node_id or local_node_id()

    async def start(self) -> Background:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def _start(self) -> None:
        engine, config = self.engine, self.config
        pool, lease_s = engine.pool, config.store.lease_s
        threads = self.executor = ThreadPoolExecutor(4, thread_name_prefix="warmstart-store")
        stores = self.stores = await offload(
            threads,
            open_stores,
            config.store,
            self.data_dir,
            region=pool.region,
            account_id=pool.account_id,
        )
        node = config.store.node_id
        beat_s = lease_s / 4
        if config.batch.enabled:
            self.queue = BatchQueue(
                engine,
                stores.batch,
                stores.events,
                node_id=None if node is None else f"{node}+batch",
                config=config.batch,
                stale_after_s=lease_s,
                heartbeat_s=beat_s,
            )
            self.backlog = self.queue
        else:
            self.backlog = EventBacklog(stores.events, executor=threads)
        self.store, self.rules = stores.events, stores.rules
        await offload(threads, sync_config, self.rules, config.schedules, pool, time.time())
        self.dispatcher = EventDispatcher(
            engine,
            self.store,
            executor=threads,
            node_id=None if node is None else NODE_PREFIX + node,
            stale_after_s=lease_s if stores.shared or not config.batch.enabled else None,
            heartbeat_s=beat_s,
        )
        self.backlog.event_listeners.append(self.dispatcher.wake)
        if self.queue is not None:
            await self.queue.start()  # attaches itself as the engine's backlog
        else:
            engine.backlog = self.backlog
        await self.dispatcher.start()
        self.schedules = ScheduleRunner(
            self.backlog,
            self.rules,
            pool,
            executor=threads,
            node=self.node_id,
            lease_s=lease_s,
        )
        self.schedules.start()

    async def join(self, url: str) -> ClusterNode:
        """Register this node (reachable at ``[store] advertise_url``, else ``url``) in the
        node registry and keep beating with its load."""
        assert self.stores is not None
        settings = self.config.store
        keys = self.config.auth.keys
        self.cluster = ClusterNode(
            self.engine,
            self.stores.members,
            self.node_id,
            settings.advertise_url or reachable(url),
            lease_s=settings.lease_s,
            beat_s=None if self.stores.shared else settings.lease_s / 4,
            credentials=next(iter(keys.items())) if keys else None,
            forwarding=self.stores.shared,
            executor=self.executor,
            extra_load=self._load,
        )
        if self.stores.shared:
            self.tokens = self._token_pool(self.cluster)
            # tokens a process of this id held before it died are not this one's
            await offload(self.executor, self.tokens.tokens.forget, self.cluster.id)
            self.cluster.on_beat.append(self.tokens.trim)
            self.engine.admission = self.tokens
        return await self.cluster.start()

    def _token_pool(self, cluster: ClusterNode) -> TokenPool:
        """Reserved and account concurrency across the cluster (tokens in blocks)."""
        engine = self.engine
        assert self.stores is not None
        assert self.stores.client is not None

        def reserved(name: str) -> int | None:
            base = name.split(".", 1)[0]  # a version runs within its function's reservation
            try:
                return engine.get_function(base).reserved_concurrency
            except ResourceNotFoundException:
                return None

        def scope_of(name: str) -> str:
            return ACCOUNT if reserved(name) is None else name.split(".", 1)[0]

        def limit_of(scope: str) -> int:
            if scope != ACCOUNT:
                return reserved(scope) or 0
            taken = sum(
                c.reserved_concurrency or 0 for c in engine.functions() if "." not in c.name
            )
            return engine.pool.account_concurrency - taken

        return TokenPool(
            RedisTokens(
                self.config.store.url or "",
                prefix=self.config.store.prefix,
                client=self.stores.client,
            ),
            cluster.id,
            scope_of=scope_of,
            limit_of=limit_of,
            live_nodes=lambda: max(1, len(cluster.members)),
            lease_s=self.config.store.lease_s,
            clock=time.time,
            executor=self.executor,
        )

    async def follow(self, api: LambdaApi) -> FunctionSync:
        """The functions made through ``api`` kept in the function registry: those the
        registry has now are registered here first, then its changes followed."""
        assert self.stores is not None
        sync = FunctionSync(
            api,
            self.stores.functions,
            self.node_id,
            static=frozenset(self.config.functions),
            executor=self.executor,
        )
        api.sync = sync
        if self.dispatcher is not None:
            self.dispatcher.catch_up = sync.poll
        return await sync.start()

    def _load(self) -> dict[str, int]:
        events = self.dispatcher.in_flight if self.dispatcher is not None else 0
        jobs = self.queue.runner.running if self.queue is not None else 0
        return {"events": events, "jobs": jobs}

    async def close(self, drain_s: float = 0.0) -> None:
        """Leave the node registry; stop firing schedules; let running events finish for
        ``drain_s`` and hand the rest back to the store; stop the batch queue (its running
        jobs get what is left of ``drain_s``); close the stores."""
        deadline = time.monotonic() + drain_s
        if self.engine.admission is self.tokens:
            self.engine.admission = None
        if self.tokens is not None:
            with contextlib.suppress(Exception):
                await self.tokens.close()
            self.tokens = None
        if self.cluster is not None:
            await self.cluster.close()
            self.cluster = None
        if self.schedules is not None:
            await self.schedules.close()
            self.schedules = None
        if self.dispatcher is not None:
            await self.dispatcher.close(drain_s)
            self.dispatcher = None
        if self.engine.backlog is self.backlog:
            self.engine.backlog = None
        if self.queue is not None:
            await self.queue.close(max(0.0, deadline - time.monotonic()))
        self.queue = self.backlog = self.store = self.rules = None
        if self.stores is not None:
            self.stores.close()
            self.stores = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None


BACKGROUND = web.AppKey("warmstart.background", Background)


@contextlib.asynccontextmanager
async def running(
    config: ConfigFile,
    host: str | None = None,
    port: int | None = None,
    *,
    app_factory: AppFactory = create_app,
    data_dir: str | None = None,
) -> AsyncIterator[str]:
    """The service up on ``host:port`` (the config's by default); yields its base URL.

    ``data_dir`` (default: ``[batch] data_dir``, else ``$WARMSTART_DATA_DIR`` or the XDG data
    directory) holds the durable store. The engine and the background are started first, then
    ``app_factory(engine, config, background=...)`` makes the app. On exit: stop accepting,
    wait for in-flight requests and invocations (at most the config's ``shutdown_timeout_s``),
    stop the background (see :class:`Background`), close the engine (every environment stops).
    """
    settings = config.service
    engine = await start_engine(config)
    background = Background(engine, config, data_dir)
    runner: web.AppRunner | None = None
    sync: FunctionSync | None = None
    try:
        await background.start()
        app = app_factory(engine, config, background=background)
        sync = await background.follow(app[API])
        runner = ServiceRunner(app, settings)
        await runner.setup()
        site = web.TCPSite(runner, host or settings.host, settings.port if port is None else port)
        await site.start()
        url = _url(runner)
        api = app[API]
        api.cluster = await background.join(url)
        app[METRICS].watch_cluster(api.cluster, background.tokens)
        yield url
    finally:
        deadline = time.monotonic() + settings.shutdown_timeout_s
        try:
            if runner is not None:
                await runner.cleanup()
            if sync is not None:
                await sync.close()
            await background.close(max(0.0, deadline - time.monotonic()))
            await drain(engine, deadline)
        finally:
            await engine.close()


def reachable(url: str) -> str:
    """``url`` as another machine reaches it: a wildcard address (``0.0.0.0``, ``::``)
    becomes the address of the interface this host routes out of (set ``[store]
    advertise_url`` where that is not the one the others should use)."""
    parts = urlsplit(url)
    if parts.hostname not in ("0.0.0.0", "::"):
        return url
    try:
        # a datagram socket "connected" to a private address sends nothing: it only picks
        # the interface a packet there would leave by
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 9))
            address = str(probe.getsockname()[0])
    except OSError:
        address = socket.gethostname()
    return f"{parts.scheme}://{address}:{parts.port}"


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def drain(engine: Engine, deadline: float) -> None:
    """Wait until no invocation runs or waits (Event ones included), or until ``deadline``."""
    while time.monotonic() < deadline:
        stats = engine.stats().values()
        if not any(s["environments"]["busy"] or s["waiting"] for s in stats):
            return
        await asyncio.sleep(0.02)


async def serve(
    config: ConfigFile,
    host: str | None = None,
    port: int | None = None,
    *,
    app_factory: AppFactory = create_app,
    announce: Callable[[str], None] | None = None,
) -> int:
    """``warmstart serve``: run until SIGTERM or SIGINT, then shut down gracefully; returns 0.

    ``announce`` receives the startup banner (the listening URL first); by default it is
    printed on stdout.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(config, host, port, app_factory=app_factory) as url:
            (announce or _announce)(_banner(config, url, host))
            await stop.wait()
            print("warmstart: shutting down (waiting for in-flight work)", file=sys.stderr)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0


def _banner(config: ConfigFile, url: str, host: str | None) -> str:
    names = ", ".join(config.functions) or "none yet"
    lines = [f"warmstart: listening on {url}", f"warmstart: functions: {names}"]
    if (host or config.service.host) not in LOOPBACK and not config.auth.enabled:
        lines.append(
            "warmstart: warning: listening beyond loopback without [auth] keys: anyone who "
            "can reach this port can run code"
        )
    return "\n".join(lines)


def _announce(text: str) -> None:
    print(text, flush=True)
