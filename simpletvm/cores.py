"""Parse and format id lists such as "0-3,6" (CPU cores, GPU ids)."""

from __future__ import annotations


def parse_ids(text: str) -> list[int]:
    """"0-3,6" -> [0, 1, 2, 3, 6]; ValueError with a hint on malformed input."""
    ids: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
            if first < 0 or last < first:
                raise ValueError(part)
            ids.update(range(first, last + 1))
    except ValueError as exc:
        raise ValueError(f"bad id list {text!r}: use forms like 0-3 or 0,2,5") from exc
    if not ids:
        raise ValueError(f"bad id list {text!r}: it names no ids")
    return sorted(ids)


def format_ids(ids: list[int]) -> str:
    """[0, 1, 2, 3, 6] -> "0-3,6"."""
    out, run = [], []
    for i in sorted(ids):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
