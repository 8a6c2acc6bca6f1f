"""Explicit transition tables: each allowed edge maps to a comment saying why it happens."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from .errors import InvalidTransition

__all__ = ["HistoryEntry", "TransitionTable", "check_transition"]

TransitionTable = Mapping[tuple[Enum | None, Enum], str]
HistoryEntry = tuple[float, str, str, str]  # (time, old, new, reason); str or StrEnum


def check_transition(
    table: TransitionTable,
    entity: str,
    entity_id: str,
    old: Enum | None,
    new: Enum,
    history: list[HistoryEntry] | tuple[HistoryEntry, ...] = (),
) -> str:
    """Return the edge's comment, or raise InvalidTransition if (old, new) is not in `table`."""
    comment = table.get((old, new))
    if comment is None:
        raise InvalidTransition(entity, entity_id, old, new, history)
    return comment
