"""Pure text formatting for the CLI (tested without a terminal)."""

from __future__ import annotations

from typing import Any


def us(value: float | None) -> str:
    """Microseconds, human-sized: 12.3 us, 1.23 ms, 2.10 s."""
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} s"
    if value >= 1e3:
        return f"{value / 1e3:.2f} ms"
    return f"{value:.1f} us"


def report_lines(report: dict[str, Any]) -> list[str]:
    """The few lines a person wants from a job report: latency untuned -> tuned."""
    untuned, tuned = report["untuned"], report["tuned"]
    lines = [
        f"{report['name']} ({report['model']}, {report['target'].get('kind')}): "
        f"{report['trials']}/{report['trial_budget']} trials in {report['rounds']} rounds",
        f"  latency untuned {us(untuned['median_us'])} -> tuned {us(tuned['median_us'])} "
        f"({report['speedup']:.1f}x faster; tuned p90 {us(tuned['p90_us'])}, "
        f"CV {100 * tuned['cv']:.1f}%)",
    ]
    for task in report.get("tasks", []):
        lines.append(f"    {task['name']:<36} x{task['weight']:<2} {task['trials']:>4} trials  "
                     f"best {us(task['best_us'])}")
    return lines
