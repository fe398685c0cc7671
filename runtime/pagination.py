"""Opaque page tokens (``NextToken``, ``Marker``, ``nextToken``) of the List* operations.

A token is where the next page starts (the last name sent, an offset...) as URL-safe base64:
opaque to clients, as AWS's tokens are, and never a secret.  A token this service did not give
decodes to None, and each API words that as its own error.
"""

from __future__ import annotations

import base64
import binascii


def encode_token(position: str) -> str:
    """The token of ``position``."""
    return base64.urlsafe_b64encode(position.encode()).decode()


def decode_token(token: str, *, strict: bool = False) -> str | None:
    """The position ``token`` carries (``""`` for an empty token), None if it is no token.

    ``strict`` refuses characters outside the URL-safe (or standard) base64 alphabet, and
    bad padding; otherwise stray characters are dropped, as ``urlsafe_b64decode`` does.
    """
    try:
        data = (
            base64.b64decode(token.encode(), altchars=b"-_", validate=True)
            if strict
            else base64.urlsafe_b64decode(token.encode())
        )
        return data.decode()
    except (binascii.Error, ValueError):  # UnicodeError is a ValueError
        return None
