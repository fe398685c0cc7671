"""Page tokens: what each List* operation gives back, and the error each words a bad token as."""

from __future__ import annotations

import pytest

from runtime.ecs.errors import InvalidParameterException
from runtime.ecs.listing import page
from runtime.errors import InvalidParameterValueException
from runtime.pagination import decode_token, encode_token
from runtime.schedules.store import ValidationException, _decode_token
from runtime.service.lambda_params import decode_marker, encode_marker


@pytest.mark.parametrize("position", ["", "f", "name-with_ünicode", "warmstart:40", "a" * 200])
@pytest.mark.parametrize("strict", [False, True])
def test_a_token_carries_its_position_back(position: str, strict: bool) -> None:
    token = encode_token(position)
    assert token.isascii()
    assert "+" not in token
    assert "/" not in token
    assert decode_token(token, strict=strict) == position


@pytest.mark.parametrize(
    ("token", "lenient", "strict"),
    [
        ("Zg==", "f", "f"),
        ("Zg", None, None),  # bad padding
        ("Z!g==", "f", None),  # a stray character: dropped, or refused
        ("Zg==\n", "f", None),
        ("_w==", None, None),  # 0xff: not UTF-8
        ("", "", ""),
        ("\ud800", None, None),  # not even encodable
    ],
)
def test_what_is_no_token_decodes_to_none(
    token: str, lenient: str | None, strict: str | None
) -> None:
    assert decode_token(token) == lenient
    assert decode_token(token, strict=True) == strict


def test_the_lambda_marker() -> None:
    assert decode_marker(None) == ""
    assert decode_marker("") == ""
    assert decode_marker(encode_marker("fn-9")) == "fn-9"
    with pytest.raises(InvalidParameterValueException) as info:
        decode_marker("Zg")
    assert info.value.message == "Marker: 'Zg' is not a marker this service gave"


def test_the_events_next_token() -> None:
    assert _decode_token(None) == ""
    assert _decode_token(encode_token("rule-1")) == "rule-1"
    with pytest.raises(ValidationException) as info:
        _decode_token("Z!g==")
    assert info.value.message == "NextToken 'Z!g==' is not a token this service gave"


def test_the_ecs_next_token_is_an_offset() -> None:
    items = list(range(5))
    first, token = page(items, None, 2)
    assert first == [0, 1]
    assert token == encode_token("warmstart:2")
    second, token = page(items, token, 2)
    assert second == [2, 3]
    assert page(items, token, 2) == ([4], None)


@pytest.mark.parametrize(
    "token", ["nope", encode_token("other:2"), encode_token("warmstart:x"), "Zg", 17, "\ud800"]
)
def test_a_bad_ecs_token_is_invalid(token: object) -> None:
    with pytest.raises(InvalidParameterException) as info:
        page([1, 2, 3], token, 1)
    assert info.value.message == "Invalid nextToken."
