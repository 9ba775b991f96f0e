"""Clocks: the system one and a settable one for tests and the local stack."""

from __future__ import annotations

import time


class SystemClock:
    #: ``time.time`` itself (read about nine times a request: no Python frame around it).
    now = staticmethod(time.time)


class FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


__all__ = ["FixedClock", "SystemClock"]
