"""Published versions and aliases of a function, as the Lambda API keeps them (no I/O).

    $LATEST ──PublishVersion──▶ 1, 2, 3 …   immutable snapshots; a number is never reused
                                  ▲
    alias "live" ─────────────────┘ one version, or two: RoutingConfig gives the second a
                                    weight (0-1), and each call picks one with ``random()``

A published version runs as an engine function of its own, named by :func:`engine_name`
(``<function>.<number>``, which no Lambda function name can be), so that no environment is
shared between versions.  This module only decides: which number comes next, what a qualifier
resolves to, whether an alias is well-formed; the service registers and removes the engine
functions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceNotFoundException,
)

LATEST = "$LATEST"
#: botocore's ``Alias`` pattern: letters, digits, ``-`` and ``_``, not all digits
ALIAS_RE = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]{1,128}")
VERSION_RE = re.compile(r"[0-9]{1,10}")


def engine_name(function: str, version: str) -> str:
    """The engine's name for a version of ``function`` (``function`` itself for $LATEST)."""
    return function if version == LATEST else f"{function}.{version}"


def new_revision() -> str:
    return str(uuid.uuid4())


@dataclass
class Version:
    """One published version: its number, Description, RevisionId and what it was made of.

    ``fingerprint`` is $LATEST's code and configuration when it was published: publishing
    again with nothing changed returns this version instead of a new one (Lambda's rule).
    ``record`` is the service's bookkeeping for it (LastModified, CodeSha256, ...)."""

    number: int
    description: str
    fingerprint: Any
    record: Any
    revision_id: str = field(default_factory=new_revision)

    @property
    def name(self) -> str:
        return str(self.number)


@dataclass
class Alias:
    """A name for one version, or two with ``weights`` (additional version → its share)."""

    name: str
    version: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    revision_id: str = field(default_factory=new_revision)

    def pick(self, random: Callable[[], float]) -> str:
        """The version one call runs: the additional one with its weight's probability."""
        for version, weight in self.weights.items():
            if random() < weight:
                return version
        return self.version


@dataclass
class Lineage:
    """The versions and aliases of one function."""

    function_arn: str
    versions: dict[str, Version] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    last_number: int = 0
    #: the qualifiers (versions, aliases) with a provisioned concurrency config → LastModified
    provisioned: dict[str, str] = field(default_factory=dict)

    def latest_published(self) -> Version | None:
        if not self.versions:
            return None
        return self.versions[max(self.versions, key=int)]

    def take_number(self) -> int:
        self.last_number += 1
        return self.last_number

    def version(self, name: str) -> Version:
        found = self.versions.get(name)
        if found is None:
            raise ResourceNotFoundException(f"Function not found: {self.function_arn}:{name}")
        return found

    def alias(self, name: str) -> Alias:
        found = self.aliases.get(name)
        if found is None:
            raise ResourceNotFoundException(f"Cannot find alias arn: {self.function_arn}:{name}")
        return found

    def resolve(self, qualifier: str | None, random: Callable[[], float]) -> str:
        """The version a call with ``qualifier`` runs (None: $LATEST); an alias with a routing
        configuration picks one per call."""
        if qualifier is None or qualifier == LATEST:
            return LATEST
        if VERSION_RE.fullmatch(qualifier):
            return self.version(qualifier).name
        alias = self.aliases.get(qualifier)
        if alias is None:
            raise ResourceNotFoundException(f"Function not found: {self.function_arn}:{qualifier}")
        return alias.pick(random)

    def aliases_of(self, version: str) -> list[str]:
        """The aliases that route any traffic to ``version``."""
        return sorted(
            a.name for a in self.aliases.values() if a.version == version or version in a.weights
        )

    def check_deletable(self, version: str) -> None:
        referenced = self.aliases_of(version)
        if referenced:
            raise ResourceConflictException(
                "Unable to delete version because the following aliases reference it: "
                f"[{', '.join(referenced)}]"
            )

    def check_alias(self, version: str, weights: dict[str, float]) -> None:
        """Lambda's rules for an alias: the versions exist; with routing, one additional
        published version, other than the main one, weighted 0-1, and a main one that is not
        $LATEST."""
        self._check_target(version)
        if not weights:
            return
        if len(weights) > 1:
            raise InvalidParameterValueException(
                "RoutingConfig.AdditionalVersionWeights: an alias routes to at most 2 versions "
                f"(one additional version), got {len(weights)} additional versions"
            )
        if version == LATEST:
            raise InvalidParameterValueException(
                "$LATEST is not supported for an alias pointing to more than 1 version"
            )
        for extra, weight in weights.items():
            if not isinstance(extra, str) or not VERSION_RE.fullmatch(extra):
                raise InvalidParameterValueException(
                    f"RoutingConfig.AdditionalVersionWeights: {extra!r} is not a published "
                    "version number"
                )
            if extra == version:
                raise InvalidParameterValueException(
                    f"Invalid function version {extra}. Function version {extra} is already "
                    "included in routing configuration."
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise InvalidParameterValueException(
                    f"RoutingConfig.AdditionalVersionWeights: the weight of {extra} must be a "
                    f"number, got {weight!r}"
                )
            if not 0.0 <= weight <= 1.0:
                raise InvalidParameterValueException(
                    f"RoutingConfig.AdditionalVersionWeights: the weight of {extra} ({weight}) "
                    "is outside the range 0.0-1.0"
                )
            self.version(extra)

    def _check_target(self, version: str) -> None:
        if version == LATEST:
            return
        if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
            raise InvalidParameterValueException(
                f"FunctionVersion: {version!r} must be $LATEST or a version number"
            )
        self.version(version)
