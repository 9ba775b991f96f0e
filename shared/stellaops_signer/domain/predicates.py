"""The predicate catalogue (spec §5.6) and the helpers that classify predicate types."""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_PREDICATE_TYPES: tuple[str, ...] = (
    "stella.ops/sbom@v1",
    "stella.ops/report@v1",
    "stella.ops/promotion@v1",
    "stella.ops/vex@v1",
    "stella.ops/vexDecision@v1",
    "stella.ops/graph@v1",
    "stella.ops/replay@v1",
    "stella.ops/policy@v1",
    "stella.ops/evidence@v1",
    "https://slsa.dev/provenance/v1",
    "https://cyclonedx.org/bom",
    "https://spdx.dev/Document",
)

_VEX_TYPES = frozenset({"stella.ops/vex@v1", "stella.ops/vexDecision@v1"})
_REACHABILITY_TYPES = frozenset({"stella.ops/graph@v1", "stella.ops/replay@v1"})


class PredicateCatalogue:
    """The predicate types this installation signs; membership is exact string equality."""

    def __init__(self, allowed: Iterable[str] = DEFAULT_PREDICATE_TYPES) -> None:
        self.allowed = frozenset(allowed)

    def __contains__(self, predicate_type: object) -> bool:
        return predicate_type in self.allowed


def is_vex_related(predicate_type: str) -> bool:
    """VEX statements and the decisions drawn from them."""
    return predicate_type in _VEX_TYPES


def is_reachability_related(predicate_type: str) -> bool:
    """Call graphs and the replay evidence that re-derives reachability."""
    return predicate_type in _REACHABILITY_TYPES


__all__ = ["DEFAULT_PREDICATE_TYPES", "PredicateCatalogue", "is_reachability_related", "is_vex_related"]
