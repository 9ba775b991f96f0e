"""Ids: random (version 4) UUIDs for audit records, leases and correlation ids."""

from __future__ import annotations

import os

_VARIANT = "89ab"


def random_id() -> str:
    """A random RFC 9562 version-4 UUID in its canonical form (what ``str(uuid.uuid4())`` gives, from
    the same ``os.urandom``, without building a ``UUID`` object on every request)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


__all__ = ["random_id"]
