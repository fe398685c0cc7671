"""Request ids and timestamps, in the forms Lambda gives them."""

from __future__ import annotations

import random
import time


def iso(now: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, as Lambda stamps its records."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def iso_now() -> str:
    return iso(time.time())


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def request_id() -> str:
    """A random version-4 UUID string (request ids need uniqueness, not secrecy)."""
    h = f"{(random.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
