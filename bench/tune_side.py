"""The check every bench tool that looks inside a case makes first: the case exists and its
seed is on the tune side, so that measure seeds stay unseen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar


class _Seeded(Protocol):
    @property
    def measure_seeds(self) -> tuple[int, ...]: ...


G = TypeVar("G", bound=_Seeded)


def tune_side(kind: str, name: str, known: Mapping[str, G], seed: int) -> G | None:
    """The `kind` called `name` among `known`, or None after printing why it cannot be looked
    at: unknown, or `seed` among its measure seeds."""
    found = known.get(name)
    if found is None:
        print(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
    elif seed in found.measure_seeds:
        print(f"seed {seed} is on {name}'s measure side: its cases are not looked at")
        return None
    return found
