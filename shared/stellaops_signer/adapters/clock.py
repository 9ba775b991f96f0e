"""Clocks: the system one and a settable one for tests and the local stack."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> float:
        return time.time()


class FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


__all__ = ["FixedClock", "SystemClock"]
