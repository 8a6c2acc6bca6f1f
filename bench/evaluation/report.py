"""Tables (terminal and markdown) and pictures (tuning curves, stage Gantt charts) of a run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from client.timeline import plot_timeline
from simpletvm.jobdir import JobDir

from .fidelity import Fidelity
from .metrics import LowerBound, contended_profile_fraction, device_busy
from .ways import WayRun


@dataclass
class WayRow:
    """One way's headline numbers."""

    way: str
    makespan: float
    lower_bound: float
    cpu_busy: float
    device_busy: float
    contended: float
    cv_median: float
    spearman_mean: float
    inflation_median: float
    errors: int

    @classmethod
    def of(cls, run: WayRun, fid: dict[str, Fidelity], bound: LowerBound) -> WayRow:
        cvs = [c for f in fid.values() for c in f.cvs]
        rhos = [r for f in fid.values() for r in f.spearman]
        infl = [x for f in fid.values() for x in f.inflation]
        return cls(run.way, run.makespan, bound.value, run.cpu_busy,
                   device_busy(run.spans, run.makespan), contended_profile_fraction(run.spans),
                   statistics.median(cvs) if cvs else float("nan"),
                   statistics.fmean(rhos) if rhos else float("nan"),
                   statistics.median(infl) if infl else float("nan"), len(run.errors))

    def cells(self, base: WayRow) -> list[str]:
        return [self.way, f"{self.makespan:.0f}", f"{self.makespan / base.makespan:.2f}",
                f"{self.makespan / self.lower_bound:.2f}", f"{self.cpu_busy:.0%}",
                f"{self.device_busy:.0%}", f"{self.contended:.0%}", f"{self.cv_median:.1%}",
                f"{self.spearman_mean:.2f}", f"{self.inflation_median:.2f}x", str(self.errors)]


WAY_HEADER = ["way", "makespan s", "makespan vs first way", "makespan / LB", "CPU busy",
              "device busy",
              "profiling contended", "profile CV (median)", "Spearman vs alone (mean)",
              "measured / alone (median)", "failed jobs"]


def latency_rows(latencies: dict[str, dict[str, float]], ways: list[str],
                 base: str) -> tuple[list[str], list[list[str]]]:
    """Per job: untuned and each way's final latency (us), and each way's ratio to `base`."""
    header = ["job", "untuned us", *[f"{w} us" for w in ways],
              *[f"{w} / {base}" for w in ways if w != base]]
    rows = []
    for job, lat in latencies.items():
        ratios = [f"{lat[w] / lat[base]:.3f}" if w in lat and base in lat else "-"
                  for w in ways if w != base]
        rows.append([job, f"{lat['untuned']:.2f}",
                     *[f"{lat[w]:.2f}" if w in lat else "-" for w in ways], *ratios])
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot_curves(runs: list[WayRun], path: Path, title: str) -> Path:
    """Best latency measured so far vs wall time since the way started: a panel per job."""
    jobs = sorted({j for r in runs for j in r.jobs})
    fig, axes = plt.subplots(1, len(jobs), figsize=(5 * len(jobs), 4), squeeze=False)
    for ax, job in zip(axes[0], jobs, strict=True):
        for run in runs:
            if job not in run.jobs or not (run.jobs[job] / "progress.json").exists():
                continue
            xs, ys, best = [], [], float("inf")
            for point in JobDir(run.jobs[job]).progress().curve:
                if point.get("estimated_latency_us") is None:
                    continue
                best = min(best, point["estimated_latency_us"])
                xs.append(point["time"] - run.started)
                ys.append(best)
            if xs:
                ax.step(xs, ys, where="post", marker="o", markersize=3, label=run.way)
        ax.set(title=job, xlabel="wall time since the way started (s)",
               ylabel="best latency as measured (us, log)", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gantt(run: WayRun, path: Path) -> Path:
    """Stage spans of one way (hatched: profile): leases on the cores they held for tunesched,
    one row per job for the ways without a scheduler (every stage there used every core)."""
    if run.way in ("sequential", "uncontrolled"):
        spans = [{**s, "host_id": f"{s['job_id']} (all cores)", "cores": [0]} for s in run.spans]
        what = "stages per job"
    else:
        spans, what = run.spans, "leases on cores"
    return plot_timeline(spans, path, title=f"{run.way}: {what} "
                         f"(makespan {run.makespan:.0f} s, hatched = profile)")


def write_fragment(path: Path, sections: list[tuple[str, str]]) -> Path:
    """A markdown file of titled sections, regenerated by every run."""
    text = "\n\n".join(f"### {title}\n\n{body}" for title, body in sections)
    path.write_text(text + "\n")
    return path


def fidelity_summary(fid: dict[str, dict[str, Fidelity]]) -> list[list[str]]:
    """Rows: way, job, batches, Spearman min/mean, candidates, CV median/p90, regret, what
    verification changed."""
    rows = []
    for way, jobs in fid.items():
        for job, f in jobs.items():
            cvs = sorted(f.cvs)
            p90 = cvs[int(0.9 * (len(cvs) - 1))] if cvs else float("nan")
            regret = f.regret
            changed = sum(c for c, _ in f.verification)
            saved = max((r for _, r in f.verification), default=None)
            rows.append([way, job, str(len(f.spearman)),
                         f"{min(f.spearman):.2f}" if f.spearman else "-",
                         f"{statistics.fmean(f.spearman):.2f}" if f.spearman else "-",
                         str(len(f.cvs)),
                         f"{statistics.median(cvs):.1%}" if cvs else "-", f"{p90:.1%}",
                         f"{regret:.3f}" if regret is not None else "-",
                         f"{changed}/{len(f.verification)}",
                         f"{saved:.3f}" if saved is not None else "-"])
    return rows


FIDELITY_HEADER = ["way", "job", "batches", "Spearman min", "Spearman mean", "candidates",
                   "CV median", "CV p90", "kept / best, alone (worst task)",
                   "verification changed the pick (tasks)",
                   "search's pick / kept, verified (worst task)"]


def describe_bound(bound: LowerBound) -> str:
    return (f"lower bound {bound.value:.0f} s = max(device {bound.device_s:.0f} s / "
            f"{bound.devices}, CPU {bound.cpu_s:.0f} s / {bound.cores} cores, "
            f"longest job {bound.chain_s:.0f} s), from the sequential run's stage times")
