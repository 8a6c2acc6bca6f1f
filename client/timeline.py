"""Lease timelines as a Gantt chart: one row per host resource (core or GPU), one bar per lease
(blank stretches in a bar: the stage was paused for a host-exclusive profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

Window = tuple[float, float]


def window(lease: dict[str, Any], end: float | None = None) -> Window:
    """(start, end) of a lease row: the stage process's own window once it reported one, else
    the lease's grant to its end (`end` while live)."""
    if lease.get("child_started") and lease.get("child_finished"):
        return float(lease["child_started"]), float(lease["child_finished"])
    stop = lease.get("ended_at") or end or lease["granted_at"]
    return float(lease["granted_at"]), float(stop)


def paused_windows(lease: dict[str, Any], end: float | None = None) -> list[Window]:
    """When the lease's stage was paused, clipped to its window; a pause never resumed lasts
    to the window's end."""
    a, b = window(lease, end)
    resumed = [*lease.get("resumed_at", ()), b]
    return [(max(a, p), min(b, r)) for p, r in zip(lease.get("paused_at", ()), resumed,
                                                   strict=False) if min(b, r) > max(a, p)]


def running_windows(lease: dict[str, Any], end: float | None = None) -> list[Window]:
    """When the lease's stage actually ran: its window less its pauses."""
    a, b = window(lease, end)
    out = []
    for p, r in paused_windows(lease, end):
        out.append((a, p))
        a = r
    out.append((a, b))
    return [(x, y) for x, y in out if y > x]


def rows_of(leases: list[dict[str, Any]]) -> list[str]:
    """Row labels "host cpuN" / "host gpuN", sorted by host then resource."""
    rows = set()
    for lease in leases:
        for core in lease.get("cores", []):
            rows.add((lease["host_id"], 0, core))
        for gpu in lease.get("gpus", []):
            rows.add((lease["host_id"], 1, gpu))
    return [f"{h} {'gpu' if k else 'cpu'}{i}" for h, k, i in sorted(rows)]


def plot_timeline(leases: list[dict[str, Any]], path: Path, now: float | None = None,
                  title: str = "lease timeline", labels: dict[str, str] | None = None) -> Path:
    """Write a PNG: x = seconds since the first grant; colour = job; hatched = profile."""
    rows = rows_of(leases)
    index = {r: i for i, r in enumerate(rows)}
    start = min((float(x["granted_at"]) for x in leases), default=0.0)
    end_default = now or max((float(x.get("ended_at") or x["granted_at"]) for x in leases),
                             default=start)
    jobs = sorted({x["job_id"] for x in leases})
    colours = {j: plt.cm.tab10(i % 10) for i, j in enumerate(jobs)}
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.45 * max(len(rows), 1)))
    for lease in leases:
        t0 = float(lease["granted_at"]) - start
        t1 = float(lease.get("ended_at") or end_default) - start
        profile = lease.get("stage") == "profile"
        colour = colours[lease["job_id"]]
        names = [f"cpu{c}" for c in lease.get("cores", [])] + \
                [f"gpu{g}" for g in lease.get("gpus", [])]
        for name in names:
            y = index[f"{lease['host_id']} {name}"]
            ax.barh(y, max(t1 - t0, 0.05), left=t0, height=0.8, color=colour,
                    edgecolor="black", linewidth=0.4, hatch="///" if profile else None)
            for p0, p1 in paused_windows(lease, end_default):
                ax.barh(y, p1 - p0, left=p0 - start, height=0.8, color="white",
                        edgecolor=colour, linewidth=0.4)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title=title)
    labels = labels or {}
    handles = [Patch(color=colours[j], label=f"{labels[j]} ({j})" if j in labels else j)
               for j in jobs]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="profile"))
    if any(lease.get("paused_at") for lease in leases):
        handles.append(Patch(facecolor="white", edgecolor="grey", label="paused"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
