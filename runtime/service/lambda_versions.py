"""The Lambda API's versions and aliases: PublishVersion, ListVersionsByFunction,
Create/Get/Update/List/DeleteAlias, and provisioned concurrency, which Lambda keeps per
version or alias (never on ``$LATEST``).

    PublishVersion ──▶ engine.register("<function>.<n>")   a snapshot of $LATEST, run apart
    CreateAlias    ──▶ Lineage.aliases                     what ``Qualifier`` resolves to
    Put…ProvisionedConcurrencyConfig(alias or n) ──▶ engine.set_concurrency on that version

The decisions (numbers, routing, alias rules) are ``runtime.versions``'; this module reads the
requests and carries them out on the engine.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

import msgspec
from aiohttp import web

from ..config import FunctionConfig
from ..errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceNotFoundException,
)
from ..versions import (
    ALIAS_RE,
    LATEST,
    VERSION_RE,
    Alias,
    Lineage,
    Version,
    engine_name,
    new_revision,
)
from .lambda_params import (
    api_worded_async,
    check_revision,
    decode_marker,
    description,
    encode_marker,
    json_object,
    query_int,
    routing_weights,
)
from .shapes import (
    FunctionRecord,
    PreconditionFailedException,
    ProvisionedConcurrencyConfigNotFoundException,
    function_configuration,
    json_response,
    timestamp,
)

if TYPE_CHECKING:
    from ..engine import Engine

DEFAULT_MAX_ITEMS = 50


class VersionOperations:
    """The operations on versions and aliases, mixed into ``LambdaApi`` (which provides the
    request helpers declared here)."""

    engine: Engine
    #: the published versions and aliases of each function (by its name)
    lineages: dict[str, Lineage]

    def _name(self, request: web.Request) -> str:
        raise NotImplementedError

    def _ref(self, request: web.Request) -> tuple[str, str | None]:
        raise NotImplementedError

    def _arn(self, name: str) -> str:
        raise NotImplementedError

    async def _record(self, config: FunctionConfig) -> FunctionRecord:
        raise NotImplementedError

    def _lineage(self, name: str) -> Lineage:
        """The versions and aliases of ``name``, which must be a function."""
        self.engine.get_function(name)
        lineage = self.lineages.get(name)
        if lineage is None:
            lineage = self.lineages.setdefault(name, Lineage(self._arn(name)))
        return lineage

    async def publish_version(self, request: web.Request, body: bytes) -> web.Response:
        """A new version from $LATEST, or the latest one when nothing changed since."""
        name = self._name(request)
        config = self.engine.get_function(name)
        record = await self._record(config)
        doc = json_object(body)
        check_revision(doc, record)
        wanted = doc.get("CodeSha256")
        if wanted is not None and wanted != record.code.sha256:
            raise InvalidParameterValueException(
                f"CodeSHA256 ({wanted}) is different from current CodeSHA256 in $LATEST "
                f"({record.code.sha256}). Please try again with the CodeSHA256 in $LATEST."
            )
        return await self._published(name, description(doc), 201)

    async def _published(
        self, name: str, text: str, status: int, *, qualified: bool = True
    ) -> web.Response:
        """Publish, and answer the version's configuration.  CreateFunction's ``Publish``
        answers with the new Version but the function's unqualified ARN (Lambda's shape)."""
        lineage = self._lineage(name)
        version = await self._publish(name, lineage, text)
        config = self.engine.get_function(engine_name(name, version.name))
        arn = f"{lineage.function_arn}:{version.name}" if qualified else lineage.function_arn
        return json_response(function_configuration(config, version.record, arn), status)

    async def _publish(self, name: str, lineage: Lineage, text: str) -> Version:
        config = self.engine.get_function(name)
        record = await self._record(config)
        made_of = snapshot_of(config, record)
        latest = lineage.latest_published()
        if latest is not None and latest.fingerprint == made_of:
            return latest
        number = str(lineage.take_number())
        snapshot = config.replace(
            name=engine_name(name, number),
            version=number,
            description=text or config.description,
            reserved_concurrency=None,
            provisioned_concurrency=0,
        )
        await self.engine.register(snapshot)
        copy = dataclasses.replace(record, provisioned=None, provisioned_modified="")
        copy.revision_id = new_revision()
        version = Version(int(number), snapshot.description, made_of, copy)
        lineage.versions[number] = version
        return version

    async def list_versions_by_function(self, request: web.Request, body: bytes) -> web.Response:
        """$LATEST, then the versions by number; ``NextMarker`` names the last one sent."""
        name = self._name(request)
        lineage = self._lineage(name)
        max_items = query_int(request, "MaxItems", DEFAULT_MAX_ITEMS, 1, 10_000)
        after = decode_marker(request.query.get("Marker"))
        order = [LATEST, *sorted(lineage.versions, key=int)]
        start = order.index(after) + 1 if after in order else 0
        if after and after not in order:
            raise InvalidParameterValueException(f"Marker: version {after} no longer exists")
        page = order[start : start + max_items]
        shapes = []
        for version in page:
            config = self.engine.get_function(engine_name(name, version))
            record = (
                await self._record(config)
                if version == LATEST
                else lineage.versions[version].record
            )
            arn = f"{lineage.function_arn}:{version}"
            shapes.append(function_configuration(config, record, arn))
        shape: dict[str, Any] = {"Versions": shapes}
        if page and page[-1] != order[-1]:
            shape["NextMarker"] = encode_marker(page[-1])
        return json_response(shape)

    async def create_alias(self, request: web.Request, body: bytes) -> web.Response:
        lineage = self._lineage(self._name(request))
        doc = json_object(body)
        alias_name = doc.get("Name")
        if not isinstance(alias_name, str) or not ALIAS_RE.fullmatch(alias_name):
            raise InvalidParameterValueException(
                f"Name: {alias_name!r} must be 1-128 letters, digits, - or _, not all digits"
            )
        if alias_name in lineage.aliases:
            raise ResourceConflictException(
                f"Alias already exists: {lineage.function_arn}:{alias_name}"
            )
        version = doc.get("FunctionVersion")
        weights = routing_weights(doc)
        lineage.check_alias(cast(str, version), weights)
        alias = Alias(alias_name, cast(str, version), description(doc), weights)
        lineage.aliases[alias_name] = alias
        return json_response(self._alias_shape(lineage, alias), 201)

    async def update_alias(self, request: web.Request, body: bytes) -> web.Response:
        """Changes the members given; ``RoutingConfig: {}`` removes the routing.  The alias's
        provisioned concurrency, if any, moves to its new version."""
        name = self._name(request)
        lineage = self._lineage(name)
        alias = lineage.alias(request.match_info["alias"])
        doc = json_object(body)
        wanted = doc.get("RevisionId")
        if wanted is not None and wanted != alias.revision_id:
            raise PreconditionFailedException(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        version = doc.get("FunctionVersion", alias.version)
        weights = routing_weights(doc) if "RoutingConfig" in doc else alias.weights
        text = description(doc) if "Description" in doc else alias.description
        lineage.check_alias(version, weights)
        if alias.name in lineage.provisioned and version != alias.version:
            await self._move_provisioned(name, lineage, alias.version, version)
        alias.version, alias.weights, alias.description = version, weights, text
        alias.revision_id = new_revision()
        return json_response(self._alias_shape(lineage, alias))

    async def get_alias(self, request: web.Request, body: bytes) -> web.Response:
        lineage = self._lineage(self._name(request))
        return json_response(self._alias_shape(lineage, lineage.alias(request.match_info["alias"])))

    async def list_aliases(self, request: web.Request, body: bytes) -> web.Response:
        """By name; ``FunctionVersion`` keeps the aliases that route to that version."""
        lineage = self._lineage(self._name(request))
        max_items = query_int(request, "MaxItems", DEFAULT_MAX_ITEMS, 1, 10_000)
        after = decode_marker(request.query.get("Marker"))
        only = request.query.get("FunctionVersion")
        names = sorted(lineage.aliases if only is None else lineage.aliases_of(only))
        page = [n for n in names if n > after][:max_items]
        shape: dict[str, Any] = {
            "Aliases": [self._alias_shape(lineage, lineage.aliases[n]) for n in page]
        }
        if page and page[-1] != names[-1]:
            shape["NextMarker"] = encode_marker(page[-1])
        return json_response(shape)

    async def delete_alias(self, request: web.Request, body: bytes) -> web.Response:
        """Also removes the alias's provisioned concurrency; an unknown alias is no error."""
        name = self._name(request)
        lineage = self._lineage(name)
        alias = lineage.aliases.pop(request.match_info["alias"], None)
        if alias is not None and lineage.provisioned.pop(alias.name, None) is not None:
            await self._provision(name, alias.version, 0)
        return web.Response(status=204)

    async def _move_provisioned(self, name: str, lineage: Lineage, old: str, new: str) -> None:
        if new == LATEST:
            raise InvalidParameterValueException(
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions."
            )
        holder = self._provision_holder(lineage, new)
        if holder is not None:
            raise ResourceConflictException(
                f"{holder} already has a Provisioned Concurrency Config for version {new}"
            )
        value = self.engine.get_function(engine_name(name, old)).provisioned_concurrency
        await api_worded_async(self._provision(name, new, value))
        await self._provision(name, old, 0)

    @staticmethod
    def _alias_shape(lineage: Lineage, alias: Alias) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "AliasArn": f"{lineage.function_arn}:{alias.name}",
            "Name": alias.name,
            "FunctionVersion": alias.version,
            "Description": alias.description,
            "RevisionId": alias.revision_id,
        }
        if alias.weights:
            shape["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
        return shape

    # -- provisioned concurrency (per version or alias) ---------------------------------------

    async def put_provisioned(self, request: web.Request, body: bytes) -> web.Response:
        """Returns once the environments are warm, so the status is READY at once."""
        name, qualifier, version = self._provisioned_target(request)
        value = json_object(body).get("ProvisionedConcurrentExecutions")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterValueException(
                "ProvisionedConcurrentExecutions: an integer of 1 or more is required"
            )
        lineage = self.lineages[name]
        holder = self._provision_holder(lineage, version)
        if holder not in (None, qualifier):
            raise ResourceConflictException(
                f"{holder} already has a Provisioned Concurrency Config for version {version}"
            )
        self._check_within_reserved(name, lineage, version, value)
        await api_worded_async(self._provision(name, version, value))
        lineage.provisioned[qualifier] = timestamp()
        return json_response(self._provisioned_shape(name, qualifier, version), 202)

    async def get_provisioned(self, request: web.Request, body: bytes) -> web.Response:
        name, qualifier, version = self._provisioned_target(request)
        self._provisioned_config(name, qualifier)
        return json_response(self._provisioned_shape(name, qualifier, version))

    async def delete_provisioned(self, request: web.Request, body: bytes) -> web.Response:
        name, qualifier, version = self._provisioned_target(request)
        self._provisioned_config(name, qualifier)
        del self.lineages[name].provisioned[qualifier]
        await self._provision(name, version, 0)
        return web.Response(status=204)

    def _provisioned_target(self, request: web.Request) -> tuple[str, str, str]:
        """The function, the qualifier and the version it warms: a version, or an alias's
        main version; never $LATEST (Lambda's rule)."""
        name, qualifier = self._ref(request)
        lineage = self._lineage(name)
        if not qualifier:
            raise InvalidParameterValueException(
                "Qualifier: required for provisioned concurrency (a version or an alias)"
            )
        if qualifier == LATEST:
            raise InvalidParameterValueException(
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions."
            )
        if VERSION_RE.fullmatch(qualifier):
            return name, qualifier, lineage.version(qualifier).name
        alias = lineage.aliases.get(qualifier)
        if alias is None:
            raise ResourceNotFoundException(
                f"Function not found: {lineage.function_arn}:{qualifier}"
            )
        if alias.version == LATEST:
            raise InvalidParameterValueException(
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions."
            )
        return name, qualifier, alias.version

    def _check_within_reserved(self, name: str, lineage: Lineage, version: str, value: int) -> None:
        """The function's reserved concurrency bounds the provisioned concurrency of all its
        versions together."""
        reserved = self.engine.get_function(name).reserved_concurrency
        if reserved is None:
            return
        others = sum(
            self.engine.get_function(engine_name(name, number)).provisioned_concurrency
            for number in lineage.versions
            if number != version
        )
        if others + value > reserved:
            raise InvalidParameterValueException(
                "Requested Provisioned Concurrency should not be greater than the "
                f"reservedConcurrentExecution for function ({reserved}, {others} of it "
                "provisioned for other versions)"
            )

    def _provisioned_config(self, name: str, qualifier: str) -> str:
        modified = self.lineages[name].provisioned.get(qualifier)
        if modified is None:
            raise ProvisionedConcurrencyConfigNotFoundException(
                "No Provisioned Concurrency Config found for this function"
            )
        return modified

    def _provision_holder(self, lineage: Lineage, version: str) -> str | None:
        """The qualifier whose provisioned concurrency config warms ``version``, if any."""
        for qualifier in lineage.provisioned:
            alias = lineage.aliases.get(qualifier)
            if qualifier == version or (alias is not None and alias.version == version):
                return qualifier
        return None

    async def _provision(self, name: str, version: str, value: int) -> None:
        target = engine_name(name, version)
        await self.engine.set_concurrency(
            target, self.engine.get_function(target).reserved_concurrency, value
        )

    def _provisioned_shape(self, name: str, qualifier: str, version: str) -> dict[str, Any]:
        target = engine_name(name, version)
        requested = self.engine.get_function(target).provisioned_concurrency
        envs = self.engine.stats()[target]["environments"]
        allocated = min(requested, envs["ready"] + envs["busy"])
        return {
            "RequestedProvisionedConcurrentExecutions": requested,
            "AllocatedProvisionedConcurrentExecutions": allocated,
            "AvailableProvisionedConcurrentExecutions": allocated,
            "Status": "READY" if allocated >= requested else "IN_PROGRESS",
            "LastModified": self._provisioned_config(name, qualifier),
        }


def snapshot_of(config: FunctionConfig, record: FunctionRecord) -> tuple[Any, ...]:
    """What makes two publications of $LATEST the same version: code (its hash, not where it
    was unpacked) and configuration (concurrency settings are the function's, not a
    version's)."""
    fields = msgspec.structs.asdict(config)
    for key in ("code", "reserved_concurrency", "provisioned_concurrency"):
        fields.pop(key)
    settings = tuple(sorted((k, repr(v)) for k, v in fields.items()))
    return (record.code.sha256, record.runtime, record.role, settings)
