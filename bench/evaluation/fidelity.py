"""Was what a way measured true? Re-measure the same candidates alone and compare.

For every round of every job: rebuild its candidates in a scratch copy of the job directory and
profile them on a quiet machine (the same stage code); then the batch's Spearman rank agreement
with what the way measured, and each candidate's coefficient of variation over its samples.
Final latency: each job compiled with the way's records and timed alone, round-robin over ways.
"""

from __future__ import annotations

import math
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from simpletvm.driver import run_checked
from simpletvm.executor import StageExecutor, StageRequest
from simpletvm.jobdir import read_json


@dataclass
class Fidelity:
    """One job's profile fidelity under one way."""

    spearman: list[float] = field(default_factory=list)  # one per batch of >= 3 candidates
    cvs: list[float] = field(default_factory=list)  # one per candidate measured during the run
    inflation: list[float] = field(default_factory=list)  # run median / isolated median
    # task -> (run median, isolated median) of every candidate measured for it
    pairs: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def regret(self) -> float | None:
        """The kernel the way's own timings made best, timed alone, over the best kernel among
        everything it measured, timed alone; the worst task. 1.0: its measurements cost nothing.
        Free of search luck: both kernels come from the same candidates."""
        worst = None
        for pairs in self.pairs.values():
            kept = min(pairs)[1]
            best = min(b for _, b in pairs)
            if best > 0:
                worst = max(worst or 0.0, kept / best)
        return worst


def _median_secs(result: dict[str, Any]) -> float | None:
    secs = result.get("run_secs")
    return statistics.median(secs) if secs else None


def _cv(secs: list[float] | None) -> float | None:
    if not secs or len(secs) < 2:
        return None
    mean = statistics.fmean(secs)
    return statistics.stdev(secs) / mean if mean > 0 else None


def remeasure(job_dir: Path, scratch: Path, executor: StageExecutor,
              cores: list[int]) -> Fidelity:
    """Rebuild and re-profile every round of `job_dir` alone; compare with the run's results."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(job_dir, scratch, ignore=shutil.ignore_patterns("art", "result", "*.tar"))
    fid = Fidelity()
    for round_dir in sorted((job_dir / "rounds").glob("r*")):
        results_path = round_dir / "results.json"
        if not results_path.exists():
            continue
        ran = read_json(results_path)["results"]
        fid.cvs += [c for c in (_cv(r.get("run_secs")) for r in ran) if c is not None]
        round_ = int(round_dir.name[1:])
        for stage in ("build", "profile"):
            run_checked(executor, StageRequest(stage, str(scratch), round_, cores))
        alone = read_json(scratch / "rounds" / round_dir.name / "results.json")["results"]
        pairs = [(a, b) for a, b in ((_median_secs(x), _median_secs(y))
                                     for x, y in zip(ran, alone, strict=True))
                 if a is not None and b is not None]
        fid.inflation += [a / b for a, b in pairs if b > 0]
        task = read_json(round_dir / "candidates.json").get("task")
        if task is not None:
            fid.pairs.setdefault(int(task), []).extend(pairs)
        if len(pairs) >= 3:
            rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
            if rho == rho:  # NaN when one side is constant
                fid.spearman.append(float(rho))
        shutil.rmtree(scratch / "rounds" / round_dir.name / "art", ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return fid


def final_latencies(model: str, target: dict[str, Any], record_dirs: dict[str, Path],
                    rounds: int = 10, repeat: int = 10,
                    shape: list[int] | None = None) -> dict[str, float]:
    """Median latency (us) of `model` compiled with each way's records, timed alone.

    Every way is compiled first; then they take turns `rounds` times, in alternating order
    (A B C, C B A, ...), and each keeps the median of its round medians, so a slow moment of
    the machine lands on all ways alike. Key "untuned": no records.
    """
    from simpletvm import SimpleTVM

    def zoo() -> Any:
        return SimpleTVM.from_zoo(model, shape).target(target)

    compiled: dict[str, Any] = {"untuned": zoo().compile()}
    for way, tasks_dir in record_dirs.items():
        compiled[way] = zoo().use_records(tasks_dir).compile()
    samples: dict[str, list[float]] = {way: [] for way in compiled}
    order = list(compiled)
    for _ in range(rounds):
        for way in order:
            samples[way].append(
                compiled[way].benchmark(repeat=repeat, baseline=False).latency.median_us)
        order.reverse()
    return {way: statistics.median(v) for way, v in samples.items()}


def kept_kernels(job_dir: Path) -> dict[int, str]:
    """Per task, the hash of the candidate with the least mean run time: what the records
    database hands the compiler."""
    best: dict[int, tuple[float, str]] = {}
    for d in sorted((job_dir / "rounds").glob("r*")):
        if not (d / "results.json").exists():
            continue
        plan = read_json(d / "candidates.json")
        results = read_json(d / "results.json")["results"]
        for cand, res in zip(plan["candidates"], results, strict=True):
            if res.get("run_secs") and plan.get("task") is not None:
                mean = statistics.fmean(res["run_secs"])
                if mean < best.get(int(plan["task"]), (math.inf, ""))[0]:
                    best[int(plan["task"])] = (mean, cand["hash"])
    return {task: h for task, (_, h) in best.items()}


def measured_candidates(job_dir: Path) -> list[list[str]]:
    """The structural hashes a job measured, round by round."""
    return [[c["hash"] for c in read_json(d / "candidates.json")["candidates"]]
            for d in sorted((job_dir / "rounds").glob("r*"))]
