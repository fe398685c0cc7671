"""Pages of the List* operations: ``maxResults`` (1-100) and an opaque ``nextToken``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from ..pagination import decode_token, encode_token
from .errors import InvalidParameterException

T = TypeVar("T")

MAX_RESULTS = 100


def page(
    items: Sequence[T], next_token: Any, max_results: Any, limit: int = MAX_RESULTS
) -> tuple[list[T], str | None]:
    """The page of ``items`` that ``next_token`` starts, and the token of the next page.

    The token is the offset of the next item: a list that changes between two calls may
    repeat or skip an item, as ECS's own tokens may.
    """
    size = limit if max_results is None else max_results
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= limit:
        raise InvalidParameterException(f"maxResults must be between 1 and {limit}.")
    start = 0 if next_token in (None, "") else _offset(next_token)
    end = start + size
    token = _token(end) if end < len(items) else None
    return list(items[start:end]), token


def _token(offset: int) -> str:
    return encode_token(f"warmstart:{offset}")


def _offset(token: Any) -> int:
    text = decode_token(str(token)) or ""
    prefix, _, offset = text.partition(":")
    if prefix != "warmstart" or not offset.isdigit():
        raise InvalidParameterException("Invalid nextToken.")
    return int(offset)
