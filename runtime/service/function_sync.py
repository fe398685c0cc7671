"""Functions made through the Lambda API, kept in the function registry so that every node
sharing the store runs them (and a restarted node has them again).

    CreateFunction / Update* / PutFunctionConcurrency / PublishVersion / *Alias … on node A
        ──▶ the local engine changes ──▶ publish(name): the whole function as one entry
            (its $LATEST, versions, aliases, records; its code zips stored by digest)
    every poll_s on every node ── registry.changes(since) ──▶ apply(entry): register, update
        or unregister engine functions until this node's copy is the entry's
    DeleteFunction ──▶ retire(name) ──▶ a tombstone the others apply as an unregister

An entry's ``spec`` is JSON (:class:`Spec`): every engine function of the function (``$LATEST``
and one per published version) as its ``FunctionConfig`` with the code named by where it
comes from (a zip digest in the registry, a directory on this machine, an image), the Lambda
records, the aliases and the version counter. Functions of the configuration file are not
kept: every node reads the same file. Code given as ``S3Bucket = "local"`` is a path on the
machine: the nodes must see the same path.

Two nodes changing one function at once: each change is written with the revision it was
made on (``expect``); the second loses with ResourceConflictException, and its node takes the
winner's copy at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..code import prepare_code
from ..config import FunctionConfig
from ..errors import ResourceConflictException
from ..registry import FunctionEntry, FunctionRegistry
from ..sqlite import offload
from ..versions import LATEST, Alias, Lineage, Version, engine_name
from .shapes import CodeInfo, FunctionRecord

if TYPE_CHECKING:
    from .lambda_api import LambdaApi

__all__ = ["FunctionSync", "Spec"]

log = logging.getLogger("warmstart.cluster")

POLL_S: Final = 0.25
#: how long an entry this node could not apply waits before it is tried again
RETRY_S: Final = 5.0


class CodeRef(msgspec.Struct, omit_defaults=True):
    """Where an engine function's code comes from on every node."""

    zip: str = ""  # a digest in the registry
    path: str = ""  # a directory (or .zip) on the machine
    # neither: an image function (no code of its own)


class Part(msgspec.Struct):
    """One engine function: $LATEST (``version`` "$LATEST") or a published version."""

    version: str
    config: dict[str, Any]
    code: CodeRef
    record: dict[str, Any]
    description: str = ""
    revision_id: str = ""
    fingerprint: Any = None


class Spec(msgspec.Struct):
    origin: str
    parts: list[Part]
    aliases: list[dict[str, Any]] = []
    last_number: int = 0
    provisioned: dict[str, str] = {}


_encode = msgspec.json.Encoder().encode
_decode_spec = msgspec.json.Decoder(Spec).decode


def _record_builtins(record: FunctionRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _record_of(data: dict[str, Any]) -> FunctionRecord:
    data = dict(data)
    code = CodeInfo(**data.pop("code"))
    return FunctionRecord(code, **data)


def _fingerprint(value: Any) -> Any:
    """A fingerprint back from JSON: tuples where it had tuples."""
    if isinstance(value, list):
        return tuple(_fingerprint(v) for v in value)
    return value


class FunctionSync:
    """The registry side of ``api`` (one per node)."""

    def __init__(
        self,
        api: LambdaApi,
        registry: FunctionRegistry,
        node_id: str,
        *,
        static: frozenset[str] = frozenset(),
        executor: Any = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
    ) -> None:
        self.api = api
        self.registry = registry
        self.node_id = node_id
        #: the configuration file's functions: never written, never removed
        self.static = static
        self.executor = executor
        self.clock = clock
        self.poll_s = poll_s
        #: the registry's sequence as of the last poll, and each function's applied revision
        self.since = 0
        self.revisions: dict[str, int] = {}
        #: code digest of each code directory this node unpacked or uploaded
        self.digests: dict[str, str] = {}
        #: entries this node could not apply (a runtime it lacks, the store gone a moment):
        #: each with when to try it again
        self._failed: dict[str, tuple[FunctionEntry, float]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FunctionSync:
        """Take every function the registry has, then follow its changes."""
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="warmstart-function-sync")
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll()
            except Exception as exc:  # the store is down: keep what runs, try again
                log.warning("functions: following the registry failed: %s", exc)

    # -- following ----------------------------------------------------------------------------

    async def poll(self) -> int:
        """Apply what changed since the last poll; returns how many functions changed."""
        async with self._lock:
            changes = await offload(self.executor, self.registry.changes, self.since)
            applied = 0
            now = self.clock()
            due = [e for e, at in self._failed.values() if at <= now]
            for entry in [*due, *changes.changed]:
                applied_at = self.revisions.get(entry.name, 0)
                # a full answer may come from a store that started over: only the same
                # revision is known to be applied
                if applied_at == entry.revision or (
                    not changes.full and applied_at > entry.revision
                ):
                    self._failed.pop(entry.name, None)
                    continue
                try:
                    await self._apply(entry)
                    applied += 1
                except Exception:
                    if entry.name not in self._failed:
                        log.exception("functions: cannot apply %s here yet", entry.name)
                    self._failed[entry.name] = (entry, now + RETRY_S)  # tried again later
                    continue
                self._failed.pop(entry.name, None)
                self.revisions[entry.name] = entry.revision
            gone = set(changes.deleted)
            if changes.full:  # every entry was listed: what this node has beyond it is gone
                listed = {e.name for e in changes.changed}
                gone |= {n for n in self.revisions if n not in listed}
            for name in gone:
                if name in self.static:
                    continue
                self._failed.pop(name, None)
                self.revisions.pop(name, None)
                if name in self.api.lineages or name in self.api.records:
                    await self.api.forget_function(name)
                    applied += 1
            self.since = changes.sequence
            return applied

    async def _apply(self, entry: FunctionEntry) -> None:
        spec = _decode_spec(entry.spec)
        api, engine = self.api, self.api.engine
        name = entry.name
        have = {c.name: c for c in engine.functions()}
        wanted = {}
        for part in spec.parts:
            wanted[engine_name(name, part.version)] = part
        for engine_fn in list(have):
            if (engine_fn == name or engine_fn.startswith(name + ".")) and engine_fn not in wanted:
                await engine.unregister(engine_fn)
        lineage = Lineage(api.engine.pool.function_arn(name))
        for fn_name, part in wanted.items():
            config = await self._materialize(part, have.get(fn_name))
            record = _record_of(part.record)
            current = have.get(fn_name)
            if current is None:
                await engine.register(config)
            else:
                await self._update(fn_name, current, config)
            if part.version == LATEST:
                api.records[name] = record
            else:
                lineage.versions[part.version] = Version(
                    int(part.version),
                    part.description,
                    _fingerprint(part.fingerprint),
                    record,
                    part.revision_id,
                )
        lineage.aliases = {a["name"]: Alias(**a) for a in spec.aliases}
        lineage.last_number = spec.last_number
        lineage.provisioned = dict(spec.provisioned)
        api.lineages[name] = lineage

    async def _materialize(self, part: Part, current: FunctionConfig | None) -> FunctionConfig:
        """``part``'s config with its code where this node has it (unpacked once per
        change: an unchanged digest keeps the directory the engine runs)."""
        code = ""
        if part.code.zip:
            if current is not None and self.digests.get(current.code) == part.code.zip:
                code = current.code
            else:
                data = await offload(self.executor, self.registry.get_code, part.code.zip)
                code = await asyncio.to_thread(prepare_code, data, self.api.code_root())
                self.digests[code] = part.code.zip
        elif part.code.path:
            code = part.code.path
        return msgspec.convert({**part.config, "code": code}, FunctionConfig)

    @staticmethod
    def _fields(config: FunctionConfig) -> dict[str, Any]:
        return msgspec.structs.asdict(config)

    async def _update(self, name: str, current: FunctionConfig, config: FunctionConfig) -> None:
        old, new = self._fields(current), self._fields(config)
        concurrency = ("reserved_concurrency", "provisioned_concurrency")
        changes = {k: v for k, v in new.items() if k not in (*concurrency, "name") and old[k] != v}
        engine = self.api.engine
        if changes:
            await engine.update(name, **changes)
        if any(old[k] != new[k] for k in concurrency):
            await engine.set_concurrency(
                name, config.reserved_concurrency, config.provisioned_concurrency
            )

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, name: str) -> None:
        """Write this node's copy of ``name`` (after a change made here)."""
        async with self._lock:
            spec, digests = await self._spec(name)
            expect = self.revisions.get(name, 0)
            try:
                entry = await offload(
                    self.executor,
                    self.registry.put,
                    name,
                    _encode(spec),
                    self.clock(),
                    code=digests,
                    expect=expect,
                )
            except ResourceConflictException:
                raise ResourceConflictException(
                    f"The operation cannot be performed at this time. {name} was changed on "
                    "another node at the same time; try again."
                ) from None
            self.revisions[name] = entry.revision

    async def retire(self, name: str) -> None:
        """``name`` was deleted here: a tombstone for the other nodes."""
        async with self._lock:
            await offload(self.executor, self.registry.delete, name, self.clock())
            self.revisions.pop(name, None)

    async def _spec(self, name: str) -> tuple[Spec, tuple[str, ...]]:
        api, engine = self.api, self.api.engine
        lineage = api.lineages.get(name) or Lineage(engine.pool.function_arn(name))
        latest = engine.get_function(name)
        parts = [await self._part(latest, LATEST, await api.record_of(latest), None)]
        for number, version in sorted(lineage.versions.items(), key=lambda kv: int(kv[0])):
            config = engine.get_function(engine_name(name, number))
            parts.append(await self._part(config, number, version.record, version))
        aliases = [dataclasses.asdict(a) for a in lineage.aliases.values()]
        spec = Spec(
            origin=self.node_id,
            parts=parts,
            aliases=aliases,
            last_number=lineage.last_number,
            provisioned=dict(lineage.provisioned),
        )
        digests = tuple(sorted({p.code.zip for p in parts if p.code.zip}))
        return spec, digests

    async def _part(
        self,
        config: FunctionConfig,
        version: str,
        record: FunctionRecord,
        published: Version | None,
    ) -> Part:
        fields = msgspec.to_builtins(config)
        fields.pop("code", None)
        return Part(
            version=version,
            config=fields,
            code=await self._code_ref(config),
            record=_record_builtins(record),
            description=published.description if published else "",
            revision_id=published.revision_id if published else "",
            fingerprint=published.fingerprint if published else None,
        )

    async def _code_ref(self, config: FunctionConfig) -> CodeRef:
        """The code of ``config`` as the other nodes find it: an upload unpacked under this
        node's code root is zipped into the registry (once per directory); anything else is
        a path they share."""
        code = config.code
        if not code:
            return CodeRef()
        digest = self.digests.get(code)
        if digest is not None:
            return CodeRef(zip=digest)
        upload = self.api.upload_of(code)
        if upload is None:
            return CodeRef(path=code)
        digest = hashlib.sha256(upload).hexdigest()
        await offload(self.executor, self.registry.put_code, digest, upload)
        self.digests[code] = digest
        self.api.forget_upload(code)
        return CodeRef(zip=digest)
