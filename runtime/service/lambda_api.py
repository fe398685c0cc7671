"""The Lambda API (REST-JSON), as boto3 and the AWS CLI call it, over an engine.

    boto3 ── HTTP ──▶ route ──▶ read_body (size cap first) ──▶ authenticate hook ──▶ operation
                                                                                     │
            FunctionConfiguration / error (x-amzn-ErrorType) ◀── shapes ◀── engine ◀─┘

Each route is a ``protocol.operation`` (the body within its cap, the hook, Lambda's errors).
Operations and their paths are botocore's service model (``lambda/2015-03-31``): Create, Get,
GetConfiguration, List, Delete, UpdateFunctionCode, UpdateFunctionConfiguration, Invoke,
Put/Get/DeleteFunctionConcurrency, Put/Get/DeleteProvisionedConcurrencyConfig,
PublishVersion, ListVersionsByFunction, Create/Get/Update/List/DeleteAlias and
GetAccountSettings.  A published version runs as an engine function of its own
(``runtime.versions``); ``Qualifier`` (or a qualified ARN) names ``$LATEST``, a version or an
alias.  Differences from AWS, all deliberate:

- Code is ``Code.ZipFile`` (unpacked safely into a fresh directory), or ``Code.S3Bucket =
  "local"`` with ``S3Key`` an absolute directory or .zip path on the service's machine.
- Reserved concurrency caps ``$LATEST`` only; each published version runs within the account
  limit.  Provisioned concurrency through an alias warms the alias's main version.  Event
  invoke configs are kept for ``$LATEST`` only.
- ``Runtime`` accepts ``python3.9`` to ``python3.14`` and is reported as given; functions run
  on the service's interpreter.  ``provided``, ``provided.al2`` and ``provided.al2023`` run the
  zip's executable ``bootstrap``, served the Lambda Runtime API (process backend).
  ``nodejs16.x`` to ``nodejs24.x`` run the zip's handler (``index.handler``: ``index.js``,
  ``.mjs`` or ``.cjs``) with warmstart's own Node.js runtime client on the ``node`` found on
  the service's PATH, whatever its version (process backend).
- ``PackageType=Image``: ``Code.ImageUri`` names an image on the service's Docker Engine (no
  registry is reached); the image's ENTRYPOINT and CMD, as ``ImageConfig`` overrides them,
  run as the runtime on the container backend, served the Runtime API on 127.0.0.1:9001 inside
  a container with no network.  ``CodeSha256`` is the local image's id and ``CodeSize`` 0.
  The agent in the container needs a Python 3.9+ there (``python3`` on the image's PATH, its
  ``warmstart.python`` label, or trusted host binds).
- Event invocations are durable when the service has a backlog (``warmstart serve`` always
  does: ``runtime.batch``); an engine without one runs them in-process.
- Put/Get/Update/DeleteFunctionEventInvokeConfig (and List…) keep the settings in the durable
  store; destinations must be functions of this service (Lambda also takes SQS, SNS, S3 and
  EventBridge ARNs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
from aiohttp import web

from ..arns import function_ref
from ..asyncinvoke import model as ev
from ..cluster.node import FORWARDED, NODE_HEADER, REVISION, ClusterNode
from ..code import make_work_dir, remove_code
from ..config import FunctionConfig
from ..configfile import ServiceConfig
from ..docker import image_id
from ..engine import ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT
from ..errors import (
    InvalidParameterValueException,
    RequestTooLargeException,
    ResourceConflictException,
    ResourceNotFoundException,
    WarmstartError,
)
from ..stamps import request_id
from ..versions import (
    LATEST,
    VERSION_RE,
    Lineage,
    engine_name,
)
from ..wording import too_large
from .body import read_body, within
from .function_sync import FunctionSync
from .lambda_params import (
    IMAGE_NO_HANDLER,
    api_worded,
    api_worded_async,
    check_revision,
    check_runtime,
    check_unsupported,
    client_context,
    code_info,
    config_changes,
    decode_marker,
    destination_function,
    destinations_of,
    encode_marker,
    engine_runtime,
    event_invoke_config,
    image_config,
    image_uri,
    json_object,
    local_code,
    query_int,
    role,
    unpack_upload,
)
from .lambda_versions import VersionOperations
from .logstream import LogFollowers
from .protocol import Authenticate, Handler, StoreUnavailable, Unavailable, WireFormat, operation
from .shapes import (
    CodeInfo,
    FunctionRecord,
    code_location,
    error_response,
    function_configuration,
    json_response,
)

if TYPE_CHECKING:
    from ..asyncinvoke.store import EventStore
    from ..engine import Engine
    from .metrics import ServiceMetrics

Operation = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
#: Lambda's errors: REST-JSON, the name in ``x-amzn-ErrorType`` (see ``shapes.error_response``)
WIRE = WireFormat("Lambda API", error_response, "ServiceException")

#: a request body of a management operation that carries no code
MANAGEMENT_BODY_LIMIT = 1_048_576
DEFAULT_MAX_ITEMS = 50
_NO_EVENT_STORE = "async invocation settings need the service's durable store (warmstart serve)"


class LambdaApi(VersionOperations):
    """The Lambda API's operations over ``engine``; ``routes()`` lists them for aiohttp.

    Keeps what Lambda reports that the engine does not (``FunctionRecord``) and the directory
    uploaded code is unpacked into: the engine removes an upload once no environment runs it
    (after DeleteFunction, or an UpdateFunctionCode that replaced it), ``close`` the rest.

    ``event_store`` keeps the event invoke configs (the service's durable store); without one
    their operations answer ServiceException.
    """

    def __init__(
        self,
        engine: Engine,
        settings: ServiceConfig,
        metrics: ServiceMetrics,
        authenticate: Authenticate | None = None,
        *,
        event_store: EventStore | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.authenticate = authenticate
        self.records: dict[str, FunctionRecord] = {}
        self.followers = LogFollowers(engine)
        if event_store is None:
            event_store = cast("EventStore", Unavailable(_NO_EVENT_STORE, "ServiceException"))
        self.event_store: EventStore = event_store
        #: Invoke's handler (the service cancels it, and only it, when its client goes)
        self.invoke: Handler = operation(
            self._found(self._invoke), _invoke_body, WIRE, authenticate
        )
        self._code_root: str | None = None
        #: the published versions and aliases of each function (by its name)
        self.lineages: dict[str, Lineage] = {}
        #: where a weighted alias draws its numbers in [0, 1) from, one per call
        self.random: Callable[[], float] = random.Random().random
        #: this node among several on one store: sync invokes it should not run go there
        self.cluster: ClusterNode | None = None
        #: the function registry's side: what is changed here is written there
        self.sync: FunctionSync | None = None
        self._uploads: dict[str, bytes] = {}

    async def close(self) -> None:
        """End log streams and remove every unpacked upload."""
        self.followers.close()
        if self._code_root is not None:
            await asyncio.to_thread(shutil.rmtree, self._code_root, True)
            self._code_root = None

    def routes(self) -> list[web.RouteDef]:
        """Every operation at botocore's method and path."""
        fn = "/2015-03-31/functions/{name}"
        v2017 = "/2017-10-31/functions/{name}"
        v2019 = "/2019-09-30/functions/{name}"
        settings = "/2016-08-19/account-settings"
        invoke_config = "/2019-09-25/functions/{name}/event-invoke-config"
        code = self.settings.code_upload_limit_bytes
        small = MANAGEMENT_BODY_LIMIT
        table: list[tuple[str, str, Operation, int]] = [
            ("POST", "/2015-03-31/functions", self.create_function, code),
            ("GET", "/2015-03-31/functions", self.list_functions, 0),
            ("GET", "/2015-03-31/functions/", self.list_functions, 0),
            ("GET", fn, self.get_function, 0),
            ("DELETE", fn, self.delete_function, 0),
            ("GET", fn + "/configuration", self.get_function_configuration, 0),
            ("PUT", fn + "/configuration", self.update_function_configuration, small),
            ("PUT", fn + "/code", self.update_function_code, code),
            ("PUT", v2017 + "/concurrency", self.put_concurrency, small),
            ("DELETE", v2017 + "/concurrency", self.delete_concurrency, 0),
            ("GET", v2019 + "/concurrency", self.get_concurrency, 0),
            ("PUT", v2019 + "/provisioned-concurrency", self.put_provisioned, small),
            ("GET", v2019 + "/provisioned-concurrency", self.get_provisioned, 0),
            ("DELETE", v2019 + "/provisioned-concurrency", self.delete_provisioned, 0),
            ("PUT", invoke_config, self.put_function_event_invoke_config, small),
            ("POST", invoke_config, self.update_function_event_invoke_config, small),
            ("GET", invoke_config, self.get_function_event_invoke_config, 0),
            ("DELETE", invoke_config, self.delete_function_event_invoke_config, 0),
            ("GET", invoke_config + "/list", self.list_function_event_invoke_configs, 0),
            ("POST", fn + "/versions", self.publish_version, small),
            ("GET", fn + "/versions", self.list_versions_by_function, 0),
            ("POST", fn + "/aliases", self.create_alias, small),
            ("GET", fn + "/aliases", self.list_aliases, 0),
            ("GET", fn + "/aliases/{alias}", self.get_alias, 0),
            ("PUT", fn + "/aliases/{alias}", self.update_alias, small),
            ("DELETE", fn + "/aliases/{alias}", self.delete_alias, 0),
            ("GET", settings, self.get_account_settings, 0),
            ("GET", settings + "/", self.get_account_settings, 0),
            ("GET", "/warmstart/logs/{name}", self.logs, 0),
        ]
        # Invoke first: aiohttp tries the routes under one prefix in the order they were added
        routes = [web.post(fn + "/invocations", self.invoke)]
        routes += [web.route(m, path, self._operation(op, limit)) for m, path, op, limit in table]
        return routes

    def _operation(self, op: Operation, limit: int) -> Handler:
        """Read the body within ``limit``, authenticate, run ``op``; errors as Lambda's.
        An operation that changes a function writes it to the registry before it answers."""
        name = op.__name__.title().replace("_", "")
        read = within(limit, _too_large_for(name, limit))  # once per route, not per request
        if op.__name__ in _CHANGES_FUNCTIONS:
            op = self._registered(op)
        return operation(self._found(op), read, WIRE, self.authenticate)

    def _found(self, op: Operation) -> Operation:
        """``op``, run again once if it named a function this node did not know while the
        registry had it (made on another node within the last poll)."""

        async def found(request: web.Request, body: bytes) -> web.StreamResponse:
            try:
                return await op(request, body)
            except ResourceNotFoundException:
                if self.sync is None or not await self.sync.poll():
                    raise
            return await op(request, body)

        found.__name__ = op.__name__
        return found

    def _registered(self, op: Operation) -> Operation:
        async def changed(request: web.Request, body: bytes) -> web.StreamResponse:
            if self.sync is not None:  # a change made on another node first: build on it
                await self.sync.poll()
            response = await op(request, body)
            sync = self.sync
            if sync is not None and response.status < 300:
                if op.__name__ == "create_function":
                    created = cast("bytes", cast("web.Response", response).body)
                    name = orjson.loads(created)["FunctionName"]
                else:
                    name = self._ref(request)[0]
                if name in sync.static:  # the configuration file's: every node reads it
                    return response
                if any(c.name == name for c in self.engine.functions()):
                    await sync.publish(name)
                else:
                    await sync.retire(name)
            return response

        changed.__name__ = op.__name__
        return changed

    # -- Invoke: the hot path -----------------------------------------------------------------

    async def _invoke(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Invoke: 200 with the payload, 202 for Event, 204 for DryRun."""
        headers = request.headers
        invocation_type = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        name, qualifier = self._ref(request)
        lineage = self._lineage(name)
        version = lineage.resolve(qualifier, self.random)
        context_header = headers.get("X-Amz-Client-Context")
        context = None if context_header is None else client_context(context_header)
        # the context's ARN is the one invoked: an alias's, even though it runs a version
        invoked = None if qualifier is None else f"{lineage.function_arn}:{qualifier}"
        target = engine_name(name, version)
        cluster = self.cluster
        if cluster is not None and invocation_type == "RequestResponse":
            if FORWARDED in headers:
                cluster.counts["received"] += 1
                await self._caught_up(name, headers.get(REVISION))
            else:
                answer = await self._forwarded(cluster, name, target, request, body)
                if answer is not None:
                    return answer
        result = await self.engine.invoke(
            target,
            body,
            invocation_type,
            client_context=context,
            invoked_arn=invoked,
        )
        out = {
            "Content-Type": "application/json",
            "X-Amz-Executed-Version": version,
            "x-amzn-RequestId": result.request_id or request_id(),
        }
        if cluster is not None:
            out[NODE_HEADER] = cluster.id
        report = result.report
        if report is not None:
            self.metrics.observe(name, report.duration_ms / 1000)
            if result.function_error:
                out["X-Amz-Function-Error"] = result.function_error
            if headers.get("X-Amz-Log-Type") == "Tail":
                out["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()).decode()
        return web.Response(body=result.payload, status=result.status_code, headers=out)

    async def _forwarded(
        self, cluster: ClusterNode, name: str, target: str, request: web.Request, body: bytes
    ) -> web.Response | None:
        """The answer of the node ``cluster`` routes this call to, or None to run it here.
        The call carries the function's revision here, so that a node behind on it catches
        up before it runs the call (never the code this node replaced)."""
        member = cluster.target(target)
        if member is None:
            return None
        extra = {}
        if self.sync is not None and name in self.sync.revisions:
            extra[REVISION] = str(self.sync.revisions[name])
        got = await cluster.forward(
            member, request.path, request.query_string, request.headers, body, extra
        )
        if got is None:
            return None
        return web.Response(body=got.body, status=got.status, headers=got.headers)

    async def _caught_up(self, name: str, revision: str | None) -> None:
        """A forwarded call made on ``revision`` of ``name``: follow the registry up to it."""
        sync = self.sync
        if sync is None or revision is None or not revision.isdigit():
            return
        if sync.revisions.get(name, 0) < int(revision):
            await sync.poll()

    def _name(self, request: web.Request) -> str:
        """The function name of a name, partial ARN or ARN, for an operation on ``$LATEST``."""
        ref, qualifier = self._ref(request)
        if qualifier not in (None, LATEST):
            raise ResourceNotFoundException(
                f"Function not found: {self._arn(ref)}:{qualifier} (this operation takes "
                "$LATEST only)"
            )
        return ref

    def _ref(self, request: web.Request) -> tuple[str, str | None]:
        """The function name and qualifier (None if none) of a name, partial ARN or ARN and the
        ``Qualifier`` parameter."""
        ref = request.match_info["name"]
        qualifier = request.query.get("Qualifier") if request.query_string else None
        parsed = function_ref(ref)  # also keeps out the engine names of versions
        if parsed is None:
            raise InvalidParameterValueException(
                f"FunctionName: {ref!r} is not a function name or ARN"
            )
        ref, in_ref = parsed
        if qualifier is not None and in_ref is not None and qualifier != in_ref:
            raise InvalidParameterValueException(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
        return ref, qualifier or in_ref or None

    # -- functions ----------------------------------------------------------------------------

    async def create_function(self, request: web.Request, body: bytes) -> web.Response:
        doc = await asyncio.to_thread(json_object, body)  # up to ~70 MB: off the loop
        name = doc.get("FunctionName")
        if not isinstance(name, str):
            raise InvalidParameterValueException("FunctionName: a name is required")
        if any(config.name == name for config in self.engine.functions()):
            raise ResourceConflictException(f"Function already exist: {name}")
        package = doc.get("PackageType", "Zip")
        if package == "Image":
            return await self._create_image_function(name, doc)
        if package != "Zip":
            raise InvalidParameterValueException(
                f"PackageType: {package!r} is neither 'Zip' nor 'Image'"
            )
        if doc.get("ImageConfig"):
            raise InvalidParameterValueException(
                "ImageConfig: only a function whose PackageType is Image has one"
            )
        if "Handler" not in doc:
            raise InvalidParameterValueException("Handler: required for a Zip package")
        runtime = check_runtime(doc.get("Runtime"))
        check_unsupported(doc)
        settings = config_changes(doc)
        code_dir, info = await self._code(doc.get("Code"))
        try:
            settings.update(engine_runtime(runtime))
            config = api_worded(lambda: FunctionConfig(name=name, code=code_dir, **settings))
            await self.engine.register(config)
        except BaseException:
            await self._discard(code_dir)
            raise
        record = FunctionRecord(info, runtime=runtime, role=role(doc.get("Role")))
        return await self._created(config, record, doc)

    async def _created(
        self, config: FunctionConfig, record: FunctionRecord, doc: dict[str, Any]
    ) -> web.Response:
        """CreateFunction's answer for a registered function (a version too, with Publish)."""
        name = config.name
        self.records[name] = record
        if doc.get("Publish") is True:
            return await self._published(name, "", 201, qualified=False)
        return json_response(function_configuration(config, record, self._arn(name)), 201)

    async def _create_image_function(self, name: str, doc: dict[str, Any]) -> web.Response:
        """CreateFunction of a container image (``PackageType=Image``): the image's
        entrypoint is the runtime, on the container backend; ``ImageConfig`` overrides its
        ENTRYPOINT, CMD and WORKDIR."""
        if doc.get("Handler") or doc.get("Runtime") or doc.get("Layers"):
            raise InvalidParameterValueException(IMAGE_NO_HANDLER)
        check_unsupported(doc)
        uri = image_uri(doc.get("Code"))
        settings = config_changes(doc)
        settings.update(
            package_type="Image",
            backend="container",
            image=uri,
            image_config=image_config(doc.get("ImageConfig")),
        )
        config = api_worded(lambda: FunctionConfig(name=name, **settings))
        await self.engine.register(config)
        info = CodeInfo.of_image(await image_id(uri), uri)
        record = FunctionRecord(info, runtime="", role=role(doc.get("Role")))
        return await self._created(config, record, doc)

    async def get_function(self, request: web.Request, body: bytes) -> web.Response:
        config, record, arn = await self._qualified(request)
        shape: dict[str, Any] = {
            "Configuration": function_configuration(config, record, arn),
            "Code": code_location(config, record),
            "Tags": {},
        }
        if config.reserved_concurrency is not None:
            shape["Concurrency"] = {"ReservedConcurrentExecutions": config.reserved_concurrency}
        return json_response(shape)

    async def get_function_configuration(self, request: web.Request, body: bytes) -> web.Response:
        config, record, arn = await self._qualified(request)
        return json_response(function_configuration(config, record, arn))

    async def _qualified(self, request: web.Request) -> tuple[FunctionConfig, FunctionRecord, str]:
        """The configuration, record and ARN a qualifier names: $LATEST's (ARN unqualified), a
        version's, or the version an alias points to (ARN the alias's)."""
        name, qualifier = self._ref(request)
        lineage = self._lineage(name)
        if qualifier is None or qualifier == LATEST:
            config = self.engine.get_function(name)
            return config, await self._record(config), self._arn(name)
        if VERSION_RE.fullmatch(qualifier):
            version = lineage.version(qualifier)
        else:
            alias = lineage.aliases.get(qualifier)
            if alias is None:
                raise ResourceNotFoundException(
                    f"Function not found: {lineage.function_arn}:{qualifier}"
                )
            if alias.version == LATEST:
                config = self.engine.get_function(name)
                arn = f"{lineage.function_arn}:{qualifier}"
                return config, await self._record(config), arn
            version = lineage.version(alias.version)
        config = self.engine.get_function(engine_name(name, version.name))
        return config, version.record, f"{lineage.function_arn}:{qualifier}"

    async def list_functions(self, request: web.Request, body: bytes) -> web.Response:
        """Sorted by name; ``NextMarker`` is an opaque token naming the last function sent."""
        max_items = query_int(request, "MaxItems", DEFAULT_MAX_ITEMS, 1, 10_000)
        after = decode_marker(request.query.get("Marker"))
        configs = sorted(self._latest_configs(), key=lambda c: c.name)
        page = [c for c in configs if c.name > after][:max_items]
        functions = []
        for config in page:
            record = await self._record(config)
            functions.append(function_configuration(config, record, self._arn(config.name)))
        shape: dict[str, Any] = {"Functions": functions}
        if page and page[-1].name != configs[-1].name:
            shape["NextMarker"] = encode_marker(page[-1].name)
        return json_response(shape)

    async def delete_function(self, request: web.Request, body: bytes) -> web.Response:
        """With a version as ``Qualifier``, that version only; unqualified, the function with
        its versions and aliases."""
        name, qualifier = self._ref(request)
        lineage = self._lineage(name)
        if qualifier == LATEST:
            raise InvalidParameterValueException(
                "$LATEST version cannot be deleted without deleting the function."
            )
        if qualifier is not None:
            await self._delete_version(name, lineage, qualifier)
            return web.Response(status=204)
        for number in list(lineage.versions):
            await self.engine.unregister(engine_name(name, number))
        del self.lineages[name]
        await self.engine.unregister(name)
        self.records.pop(name, None)
        self.metrics.forget(name)
        # Lambda deletes a function's async settings with it (none are kept without a store)
        with contextlib.suppress(ResourceNotFoundException, StoreUnavailable):
            await asyncio.to_thread(self.event_store.delete_event_invoke_config, name)
        return web.Response(status=204)

    async def _delete_version(self, name: str, lineage: Lineage, qualifier: str) -> None:
        if not VERSION_RE.fullmatch(qualifier):  # Lambda's answer for any alias, known or not
            raise InvalidParameterValueException("Deletion of aliases is not currently supported.")
        lineage.version(qualifier)
        lineage.check_deletable(qualifier)
        del lineage.versions[qualifier]
        lineage.provisioned.pop(qualifier, None)
        await self.engine.unregister(engine_name(name, qualifier))

    async def update_function_code(self, request: web.Request, body: bytes) -> web.Response:
        config, record = await self._function(request)
        doc = await asyncio.to_thread(json_object, body)
        check_revision(doc, record)
        if config.image_package:
            return await self._update_image(config, record, doc)
        if "ImageUri" in doc:
            raise InvalidParameterValueException(
                "Please don't provide ImageUri when updating a function with packageType Zip."
            )
        code_doc = {k: doc[k] for k in ("ZipFile", "S3Bucket", "S3Key") if k in doc}
        code_dir, info = await self._code(code_doc)
        if doc.get("DryRun") is True:
            await self._discard(code_dir)
            return json_response(function_configuration(config, record, self._arn(config.name)))
        try:
            config = await self.engine.update(config.name, code=code_dir)
        except BaseException:
            await self._discard(code_dir)
            raise
        return await self._code_updated(config, record, info, doc)

    async def _code_updated(
        self, config: FunctionConfig, record: FunctionRecord, info: CodeInfo, doc: dict[str, Any]
    ) -> web.Response:
        """UpdateFunctionCode's answer once the new code runs (a version too, with Publish)."""
        record.code = info
        record.touch()
        if doc.get("Publish") is True:
            return await self._published(config.name, "", 200)
        return json_response(function_configuration(config, record, self._arn(config.name)))

    async def _update_image(
        self, config: FunctionConfig, record: FunctionRecord, doc: dict[str, Any]
    ) -> web.Response:
        """UpdateFunctionCode of an image function: a new ``ImageUri`` (or the same one,
        rebuilt: a new generation either way)."""
        if any(key in doc for key in ("ZipFile", "S3Bucket", "S3Key")):
            raise InvalidParameterValueException(
                "Please provide ImageUri when updating a function with packageType Image."
            )
        uri = image_uri(doc)
        if doc.get("DryRun") is True:
            return json_response(function_configuration(config, record, self._arn(config.name)))
        config = await api_worded_async(self.engine.update(config.name, image=uri))
        info = CodeInfo.of_image(await image_id(uri), uri)
        return await self._code_updated(config, record, info, doc)

    async def update_function_configuration(
        self, request: web.Request, body: bytes
    ) -> web.Response:
        config, record = await self._function(request)
        doc = json_object(body)
        check_revision(doc, record)
        check_unsupported(doc)
        if config.image_package and (doc.get("Handler") or doc.get("Runtime")):
            raise InvalidParameterValueException(IMAGE_NO_HANDLER)
        runtime = check_runtime(doc["Runtime"]) if "Runtime" in doc else record.runtime
        changes = config_changes(doc)
        if "ImageConfig" in doc:
            if not config.image_package:
                raise InvalidParameterValueException(
                    "ImageConfig: only a function whose PackageType is Image has one"
                )
            changes["image_config"] = image_config(doc["ImageConfig"])
        if not config.image_package:
            changes.update(engine_runtime(runtime, config.runtime))
        if changes:
            config = await api_worded_async(self.engine.update(config.name, **changes))
        record.runtime = runtime
        if "Role" in doc:
            record.role = role(doc["Role"])
        record.touch()
        return json_response(function_configuration(config, record, self._arn(config.name)))

    def _latest_configs(self) -> list[FunctionConfig]:
        """The functions themselves, without the engine functions of published versions."""
        return [c for c in self.engine.functions() if c.version == LATEST]

    # -- concurrency --------------------------------------------------------------------------

    async def put_concurrency(self, request: web.Request, body: bytes) -> web.Response:
        name = self._name(request)
        value = json_object(body).get("ReservedConcurrentExecutions")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterValueException(
                "ReservedConcurrentExecutions: an integer of 0 or more is required"
            )
        await api_worded_async(self.engine.set_concurrency(name, value))
        return json_response({"ReservedConcurrentExecutions": value})

    async def get_concurrency(self, request: web.Request, body: bytes) -> web.Response:
        reserved = self.engine.get_function(self._name(request)).reserved_concurrency
        return json_response({} if reserved is None else {"ReservedConcurrentExecutions": reserved})

    async def delete_concurrency(self, request: web.Request, body: bytes) -> web.Response:
        await self.engine.set_concurrency(self._name(request), None)
        return web.Response(status=204)

    # -- async invocation settings ------------------------------------------------------------

    async def put_function_event_invoke_config(
        self, request: web.Request, body: bytes
    ) -> web.Response:
        """Replaces the whole config: settings left out are removed."""
        name = self._event_invoke_target(request)
        put = self.event_store.put_event_invoke_config
        config = self._event_invoke_config(body)
        saved = await asyncio.to_thread(put, name, config, time.time())
        return json_response(self._event_invoke_shape(name, saved))

    async def update_function_event_invoke_config(
        self, request: web.Request, body: bytes
    ) -> web.Response:
        """Changes only the settings given."""
        name = self._event_invoke_target(request)
        update = self.event_store.update_event_invoke_config
        config = self._event_invoke_config(body)
        saved = await asyncio.to_thread(update, name, config, time.time())
        return json_response(self._event_invoke_shape(name, saved))

    async def get_function_event_invoke_config(
        self, request: web.Request, body: bytes
    ) -> web.Response:
        name = self._event_invoke_target(request)
        config = await asyncio.to_thread(self.event_store.get_event_invoke_config, name)
        return json_response(self._event_invoke_shape(name, config))

    async def delete_function_event_invoke_config(
        self, request: web.Request, body: bytes
    ) -> web.Response:
        name = self._event_invoke_target(request)
        await asyncio.to_thread(self.event_store.delete_event_invoke_config, name)
        return web.Response(status=204)

    async def list_function_event_invoke_configs(
        self, request: web.Request, body: bytes
    ) -> web.Response:
        """The one config of ``$LATEST``, if there is one (there are no other versions)."""
        query_int(request, "MaxItems", 50, 1, 50)
        name = self._event_invoke_target(request)
        try:
            configs = [await asyncio.to_thread(self.event_store.get_event_invoke_config, name)]
        except ResourceNotFoundException:
            configs = []
        shapes = [self._event_invoke_shape(name, config) for config in configs]
        return json_response({"FunctionEventInvokeConfigs": shapes})

    def _event_invoke_target(self, request: web.Request) -> str:
        """The function whose settings are asked for; it must exist."""
        return self.engine.get_function(self._name(request)).name

    def _event_invoke_config(self, body: bytes) -> ev.EventInvokeConfig:
        """The settings of a Put or Update, checked; destinations must be functions here."""
        config = event_invoke_config(json_object(body))
        ev.check_event_invoke_config(config)
        names = {c.name for c in self.engine.functions()}
        for member, arn in destinations_of(config):
            function = destination_function(arn, self.engine.pool)
            if function is None:
                raise InvalidParameterValueException(
                    f"{member}: {arn!r} is not a function of this service (warmstart delivers "
                    f"to Lambda functions in {self.engine.pool.region}, account "
                    f"{self.engine.pool.account_id})"
                )
            if function not in names:
                raise InvalidParameterValueException(
                    f"{member}: the function {function} does not exist"
                )
        return config

    def _event_invoke_shape(self, name: str, config: ev.EventInvokeConfig) -> dict[str, Any]:
        """FunctionEventInvokeConfig as Lambda answers it (LastModified in epoch seconds)."""
        shape: dict[str, Any] = {
            "FunctionArn": f"{self._arn(name)}:$LATEST",
            "LastModified": config.last_modified,
            "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}},
        }
        if config.maximum_retry_attempts is not None:
            shape["MaximumRetryAttempts"] = config.maximum_retry_attempts
        if config.maximum_event_age_in_seconds is not None:
            shape["MaximumEventAgeInSeconds"] = config.maximum_event_age_in_seconds
        for member, arn in destinations_of(config):
            kind = member.split(".")[1]
            shape["DestinationConfig"][kind] = {"Destination": arn}
        return shape

    # -- account and logs ---------------------------------------------------------------------

    async def get_account_settings(self, request: web.Request, body: bytes) -> web.Response:
        configs = self._latest_configs()
        limit = self.engine.pool.account_concurrency
        reserved = sum(c.reserved_concurrency or 0 for c in configs)
        code_size = 0
        for config in configs:
            code_size += (await self._record(config)).code.size
        return json_response(
            {
                "AccountLimit": {
                    "TotalCodeSize": 80_530_636_800,
                    "CodeSizeUnzipped": 262_144_000,
                    "CodeSizeZipped": 52_428_800,
                    "ConcurrentExecutions": limit,
                    "UnreservedConcurrentExecutions": limit - reserved,
                },
                "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(configs)},
            }
        )

    async def logs(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """warmstart's own: recent log text of $LATEST or the version ``Qualifier`` names (an
        alias: its main version); ``?follow=1`` streams new entries, of every version, as
        they end."""
        name, qualifier = self._ref(request)
        lineage = self._lineage(name)
        if qualifier in lineage.aliases:
            qualifier = lineage.aliases[qualifier].version
        version = lineage.resolve(qualifier, self.random)
        text = self.engine.logs(engine_name(name, version))
        if request.query.get("follow") not in ("1", "true"):
            return web.Response(text=text, content_type="text/plain")
        return await self.followers.stream(request, name, text)

    # -- helpers ------------------------------------------------------------------------------

    def _arn(self, name: str) -> str:
        return self.engine.pool.function_arn(name)

    async def _function(self, request: web.Request) -> tuple[FunctionConfig, FunctionRecord]:
        config = self.engine.get_function(self._name(request))
        return config, await self._record(config)

    async def _record(self, config: FunctionConfig) -> FunctionRecord:
        """The record of a function; one registered outside this API gets one on first use."""
        record = self.records.get(config.name)
        if record is None:
            info = await asyncio.to_thread(code_info, config.code)
            record = self.records.setdefault(config.name, FunctionRecord(info))
        return record

    async def _code(self, code: Any) -> tuple[str, CodeInfo]:
        """A directory holding the code of ``Code`` (or UpdateFunctionCode's fields)."""
        if not isinstance(code, dict):
            raise InvalidParameterValueException("Code: a structure with ZipFile is required")
        if "ImageUri" in code:
            raise InvalidParameterValueException(
                "Please don't provide ImageUri when the intended function PackageType is Zip."
            )
        if "ZipFile" in code:
            code_dir, info, data = await asyncio.to_thread(
                unpack_upload, code["ZipFile"], self._root()
            )
            self._uploaded(code_dir, data)
            return code_dir, info
        if code.get("S3Bucket") == "local":
            return await self._local_code(code.get("S3Key"))
        if "S3Bucket" in code:
            raise InvalidParameterValueException(
                "Code.S3Bucket: S3 is not reachable from warmstart; upload Code.ZipFile, or use "
                "S3Bucket 'local' with S3Key an absolute directory or .zip path on this machine"
            )
        raise InvalidParameterValueException(
            "Code: ZipFile (or S3Bucket 'local' + S3Key) is required"
        )

    async def _local_code(self, key: Any) -> tuple[str, CodeInfo]:
        if not isinstance(key, str) or not os.path.isabs(key):
            raise InvalidParameterValueException(
                "Code.S3Key: with S3Bucket 'local', an absolute directory or .zip path"
            )
        code_dir, info, data = await asyncio.to_thread(local_code, key, self._root())
        if data is not None:
            self._uploaded(code_dir, data)
        return code_dir, info

    def _uploaded(self, code_dir: str, data: bytes) -> None:
        """Keep an upload's zip until the registry has it (only with one to write to)."""
        if self.sync is not None:
            self._uploads[code_dir] = data

    def upload_of(self, code_dir: str) -> bytes | None:
        """The zip ``code_dir`` was unpacked from, while the registry does not have it."""
        return self._uploads.get(code_dir)

    def forget_upload(self, code_dir: str) -> None:
        self._uploads.pop(code_dir, None)

    def code_root(self) -> str:
        """Where code from the registry is unpacked: the uploads' root."""
        return self._root()

    async def record_of(self, config: FunctionConfig) -> FunctionRecord:
        return await self._record(config)

    async def forget_function(self, name: str) -> None:
        """Remove ``name`` here only (another node deleted it): its versions, records and
        metrics; its async settings are the store's, deleted by that node."""
        lineage = self.lineages.pop(name, None)
        for number in list(lineage.versions) if lineage is not None else []:
            with contextlib.suppress(ResourceNotFoundException):
                await self.engine.unregister(engine_name(name, number))
        with contextlib.suppress(ResourceNotFoundException):
            await self.engine.unregister(name)
        self.records.pop(name, None)
        self.metrics.forget(name)

    def _root(self) -> str:
        """The directory uploads are unpacked under (created on first use, marked as this
        process's so that a later run removes it should this one be killed)."""
        if self._code_root is None:
            self._code_root = make_work_dir(self.engine.pool.work_dir, "warmstart-code-")
        return self._code_root

    async def _discard(self, code_dir: str) -> None:
        """Remove an unpacked upload that did not become a function's code (a directory of
        ``S3Bucket = "local"`` is used in place and stays)."""
        await asyncio.to_thread(remove_code, code_dir)


# -- request parsing ------------------------------------------------------------------------------


#: the operations after which a function's registry entry is written again
_CHANGES_FUNCTIONS: Final = frozenset(
    {
        "create_function",
        "delete_function",
        "update_function_code",
        "update_function_configuration",
        "put_concurrency",
        "delete_concurrency",
        "put_provisioned",
        "delete_provisioned",
        "publish_version",
        "create_alias",
        "update_alias",
        "delete_alias",
    }
)


def _too_large_for(operation: str, limit: int) -> Callable[[int], WarmstartError]:
    def build(size: int) -> WarmstartError:
        return RequestTooLargeException(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )

    return build


def _payload_too_large(limit: int, invocation_type: str) -> Callable[[int], WarmstartError]:
    def build(size: int) -> WarmstartError:
        return RequestTooLargeException(too_large(size, limit, invocation_type))

    return build


#: Invoke's oversized-payload errors, built once (the wording tells only Event from the rest)
_EVENT_TOO_LARGE = _payload_too_large(ASYNC_PAYLOAD_LIMIT, "Event")
_SYNC_TOO_LARGE = _payload_too_large(SYNC_PAYLOAD_LIMIT, "RequestResponse")


def _invoke_body(request: web.Request) -> Awaitable[bytes]:
    """Invoke's payload, within the cap of its invocation type."""
    if request.headers.get("X-Amz-Invocation-Type") == "Event":
        return read_body(request, ASYNC_PAYLOAD_LIMIT, _EVENT_TOO_LARGE)
    return read_body(request, SYNC_PAYLOAD_LIMIT, _SYNC_TOO_LARGE)
