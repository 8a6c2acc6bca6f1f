"""Pictures people would rather look at than tables: sweeps and tuning curves, as PNG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_sweep(results: list[Any], path: Path, title: str) -> Path:
    """Tuned vs untuned latency per model over the trial budgets, one line per (model, batch)."""
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for r in results:
        if not r.error:
            series[f"{r.model} b{r.batch} {r.target}"].append((r.trials, r.tuned_us, r.untuned_us))
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in sorted(series.items()):
        points.sort()
        line, = ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
        ax.axhline(points[0][2], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set(xlabel="trial budget", ylabel="latency (us, log)", yscale="log",
           title=f"{title}: tuned (solid) vs untuned (dotted)")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """Best estimated model latency vs wall time since the job's first round, one line a job."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, curve in sorted(curves.items()):
        points = [(c["time"], c["estimated_latency_us"]) for c in curve
                  if c.get("estimated_latency_us") is not None]
        if not points:
            continue
        t0 = curve[0]["time"]
        best, xs, ys = float("inf"), [], []
        for t, lat in points:
            best = min(best, lat)
            xs.append(t - t0)
            ys.append(best)
        ax.step(xs, ys, where="post", label=name)
    ax.set(xlabel="wall time (s)", ylabel="estimated model latency (us, log)", yscale="log",
           title=title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
