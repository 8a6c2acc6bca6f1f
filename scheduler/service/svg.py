"""SVG charts the dashboard shows, drawn by the daemon from its records: a job's best-latency
curve and the lease Gantt of every host core and GPU. Pure functions of plain data (no daemon,
no I/O), so the browser needs no chart library and nothing is fetched at run time.

Every text that came from a user (job names, host ids) is XML-escaped here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from html import escape
from typing import Any

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
FOREIGN = "#9a9a9a"  # leases of jobs the viewer may not see
MIN_SPAN_S = 10.0  # the Gantt's shortest time axis
LEGEND_COLUMNS = 4
ROWS = ("rows",)  # the key under which a Gantt memo keeps the rows its markup was drawn for
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def job_color(job_id: str) -> str:
    """A stable colour per job (the same on every page and every refresh)."""
    if not job_id:
        return FOREIGN
    return PALETTE[int(hashlib.sha1(job_id.encode()).hexdigest()[:8], 16) % len(PALETTE)]


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
            + "".join(body) + "</svg>")


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    for factor in (1, 2, 5, 10):
        if (hi - lo) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"


def curve_svg(points: Sequence[Sequence[float]], untuned_us: float | None = None,
              width: int = 640, height: int = 260) -> str:
    """The best estimated model latency (us) against trials measured: `points` are
    [time, trials, latency_us]. A dashed line marks the untuned model's latency if known."""
    left, right, top, bottom = 56, 12, 12, 34
    pw, ph = width - left - right, height - top - bottom
    body = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
            'stroke="#ccc"/>']
    if not points:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" {FONT} '
                    'fill="#777">no measurements yet</text>')
        return _svg(width, height, body, "best latency curve (empty)")
    trials = [p[1] for p in points]
    lat = [p[2] for p in points] + ([untuned_us] if untuned_us else [])
    x0, x1 = 0.0, max(max(trials), 1.0)
    y0, y1 = 0.0, max(lat) * 1.05

    def x(v: float) -> float:
        return left + pw * (v - x0) / (x1 - x0)

    def y(v: float) -> float:
        return top + ph * (1 - (v - y0) / (y1 - y0))

    for t in _ticks(x0, x1):
        body.append(f'<text x="{x(t):.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                    f'{FONT}>{_number(t)}</text>')
    for t in _ticks(y0, y1, 4):
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                    f'stroke="#eee"/><text x="{left - 4}" y="{y(t) + 4:.1f}" '
                    f'text-anchor="end" {FONT}>{_number(t)}</text>')
    body.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" {FONT}>'
                'trials measured</text>')
    body.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" {FONT} '
                f'transform="rotate(-90 12 {top + ph / 2})">latency (us)</text>')
    if untuned_us:
        body.append(f'<line class="untuned" x1="{left}" x2="{left + pw}" y1="{y(untuned_us):.1f}"'
                    f' y2="{y(untuned_us):.1f}" stroke="#999" stroke-dasharray="4 3">'
                    f'<title>untuned {_number(untuned_us)} us</title></line>')
    path = " ".join(f"{x(p[1]):.1f},{y(p[2]):.1f}" for p in points)
    body.append(f'<polyline class="curve" points="{path}" fill="none" stroke="#4e79a7" '
                'stroke-width="2"/>')
    for p in points:
        body.append(f'<circle class="point" cx="{x(p[1]):.1f}" cy="{y(p[2]):.1f}" r="2.5" '
                    f'fill="#4e79a7"><title>{_number(p[1])} trials: {_number(p[2])} us'
                    '</title></circle>')
    return _svg(width, height, body, f"best latency curve, {len(points)} points")


def resource_rows(runners: Sequence[dict[str, Any]],
                  leases: Sequence[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """The Gantt's rows: (host, "cpu" or "gpu", id) of every registered runner's cores and
    GPUs and every resource a lease held, sorted."""
    rows = {(r["host_id"], "cpu", c) for r in runners for c in r["cores"]}
    rows |= {(r["host_id"], "gpu", g) for r in runners for g in r["gpus"]}
    for lease in leases:
        rows |= {(lease["host_id"], "cpu", c) for c in lease["cores"]}
        rows |= {(lease["host_id"], "gpu", g) for g in lease["gpus"]}
    return sorted(rows)


def gantt_svg(runners: Sequence[dict[str, Any]], leases: Sequence[dict[str, Any]],
              now: float, window_s: float, epoch: float = 0.0,
              memo: dict[tuple, str] | None = None, width: int = 1000) -> str:
    """One row per host core or GPU, one bar per lease and resource over the last
    `window_s` seconds up to `now` (or since the first lease given, if later), and a legend of
    the jobs shown. Leases are `dashboard.lease_row` dicts: lease_id, job_id ("" for a job the
    viewer may not see), label, stage, host_id, cores, gpus, granted_at, ended_at (0 while
    live), exclusive and paused [start, end] pairs (end 0 while paused).

    Each lease is a `<g class="lease" data-lease data-job>` of `rect.bar` (one per resource)
    and `rect.paused`, drawn in seconds since `epoch` inside one scaled group, so an ended
    lease's markup never changes: `memo` (kept by the caller between calls, with one `epoch`)
    holds it, and a redraw of thousands of leases costs a join. Entries not drawn this time
    are dropped from `memo`."""
    rows = resource_rows(runners, leases)
    left, right, top, row_h = 120, 10, 22, 16
    plot_h = row_h * max(len(rows), 1)
    pw = width - left - right
    # the axis spans the window, or less when the leases shown began later (a young daemon)
    first = min((x["granted_at"] for x in leases), default=now)
    span = max(min(window_s, now - first), MIN_SPAN_S)
    t0 = now - span
    scale = pw / span  # px per second

    def x(t: float) -> float:
        return left + (t - t0) * scale

    shown = [x for x in leases if (x["ended_at"] or now) >= t0]
    jobs = list(dict.fromkeys((x["job_id"], x["label"]) for x in shown))
    legend_rows = -(-len(jobs) // LEGEND_COLUMNS)
    height = top + plot_h + 10 + 16 * legend_rows
    body = [f'<defs><clipPath id="plot"><rect x="{left}" y="0" width="{pw}" '
            f'height="{top + plot_h}"/></clipPath></defs>']
    for t in _ticks(0, span, 6):
        label = f"-{_number(t)} s" if t else "now"
        body.append(f'<line x1="{x(now - t):.1f}" x2="{x(now - t):.1f}" y1="{top - 4}" '
                    f'y2="{top + plot_h}" stroke="#eee"/><text x="{x(now - t):.1f}" y="12" '
                    f'text-anchor="middle" {FONT}>{label}</text>')
    index = {row: i for i, row in enumerate(rows)}
    for i, (host, kind, rid) in enumerate(rows):
        body.append(f'<text x="{left - 6}" y="{top + i * row_h + 12}" text-anchor="end" '
                    f'{FONT}>{escape(host)} {kind}{rid}</text>')
    body.append(f'<g clip-path="url(#plot)"><g transform="translate('
                f'{left - (t0 - epoch) * scale:.3f} 0) scale({scale:.6f} 1)">')
    def ys(lease: dict[str, Any]) -> tuple[int, ...]:
        return tuple(top + index[(lease["host_id"], kind, rid)] * row_h + 2
                     for kind, ids in (("cpu", lease["cores"]), ("gpu", lease["gpus"]))
                     for rid in ids)

    memo = {} if memo is None else memo
    if memo.get(ROWS) != tuple(rows):  # rows moved: every bar's height changes
        memo.clear()
    used: dict[tuple, str] = {ROWS: tuple(rows)}
    for lease in shown:
        if lease["ended_at"]:
            key = (lease["lease_id"], lease["ended_at"], lease["job_id"], lease["label"])
            text = memo.get(key)
            used[key] = text if text is not None else _lease_bars(
                lease, ys(lease), lease["ended_at"], epoch, row_h)
            body.append(used[key])
        else:
            body.append(_lease_bars(lease, ys(lease), now, epoch, row_h))
    memo.clear()
    memo.update(used)
    body.append("</g></g>")
    for n, (job_id, label) in enumerate(jobs):
        lx = left + (n % LEGEND_COLUMNS) * (pw / LEGEND_COLUMNS)
        ly = top + plot_h + 10 + (n // LEGEND_COLUMNS) * 16
        body.append(f'<g class="legend" data-job="{escape(job_id)}"><rect x="{lx:.1f}" '
                    f'y="{ly}" width="10" height="10" fill="{job_color(job_id)}"/><text '
                    f'x="{lx + 14:.1f}" y="{ly + 9}" {FONT}>{escape(label)}'
                    f'{f" ({escape(job_id)})" if job_id else ""}</text></g>')
    return _svg(width, height, body, f"lease timeline, {len(rows)} resources")


def _lease_bars(lease: dict[str, Any], ys: tuple[int, ...], end: float, epoch: float,
                row_h: int) -> str:
    """One lease's group: a bar per resource row `ys`, in seconds since `epoch`."""
    start = lease["granted_at"] - epoch
    width = max(end - lease["granted_at"], 0.0)
    stroke = ' stroke="#222" stroke-width="1"' if lease["exclusive"] else \
        ' stroke="#fff" stroke-width="0.5"'
    parts = [f'<g class="lease" data-lease="{escape(lease["lease_id"])}" '
             f'data-job="{escape(lease["job_id"])}" data-stage="{escape(lease["stage"])}" '
             f'fill="{job_color(lease["job_id"])}"{stroke} vector-effect="non-scaling-stroke">'
             f'<title>{escape(lease["label"])} {escape(lease["stage"])} '
             f'({escape(lease["lease_id"])})</title>']
    for y in ys:
        parts.append(f'<rect class="bar" x="{start:.3f}" y="{y}" width="{width:.3f}" '
                     f'height="{row_h - 4}" vector-effect="non-scaling-stroke"/>')
        for a, b in lease["paused"]:
            parts.append(f'<rect class="paused" x="{a - epoch:.3f}" y="{y}" '
                         f'width="{max((b or end) - a, 0.0):.3f}" height="{row_h - 4}" '
                         'fill="#fff" opacity="0.6" stroke="none"/>')
    parts.append("</g>")
    return "".join(parts)
