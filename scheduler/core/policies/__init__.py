"""Scheduling policies, by name: `get_policy("interleaved")`.

sequential   one job at a time in the whole scheduler (the baseline of the thesis)
shared       no control: every stage starts at once, cores oversubscribed, profiles not
             exclusive (the scheduler-less baseline)
interleaved  load-aware: profiles exclusive, other jobs' CPU stages fill the gaps
predictive   interleaved plus stage-time estimates: backfills while a profile waits for its
             host to drain, ranks work by expected remaining time, and lets the job with the
             most left wait briefly for the cores its stage can use (widening)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UnknownPolicy
from .base import Placement, Policy, Scratch
from .interleaved import InterleavedPolicy
from .predictive import PredictivePolicy
from .sequential import SequentialPolicy
from .shared import SharedPolicy

__all__ = [
    "InterleavedPolicy",
    "Placement",
    "Policy",
    "PredictivePolicy",
    "Scratch",
    "SequentialPolicy",
    "SharedPolicy",
    "available_policies",
    "get_policy",
    "register_policy",
]

_REGISTRY: dict[str, Callable[..., Policy]] = {}


def register_policy(name: str, factory: Callable[..., Policy]) -> None:
    """Make `factory(**options)` available as `get_policy(name, **options)`."""
    _REGISTRY[name] = factory


def get_policy(name: str, **options: Any) -> Policy:
    """A new policy object for `name`; raises UnknownPolicy."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownPolicy(f"unknown policy {name!r}; known: {available_policies()}") from None
    return factory(**options)


def available_policies() -> list[str]:
    """Registered policy names, sorted."""
    return sorted(_REGISTRY)


for _cls in (SequentialPolicy, SharedPolicy, InterleavedPolicy, PredictivePolicy):
    register_policy(_cls.name, _cls)
