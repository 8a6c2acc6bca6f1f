"""Was what a way measured true? Re-measure the same candidates alone and compare.

For every round of every job: rebuild its candidates in a scratch copy of the job directory and
profile them on a quiet machine (the same stage code); then the batch's Spearman rank agreement
with what the way measured, and each candidate's coefficient of variation over its samples.
Final latency: each job compiled with the way's records and timed alone, round-robin over ways.
Verification rounds are not batches of the search: they are left out of the fidelity numbers,
and what they did is reported apart (`verification_effect`).
"""

from __future__ import annotations

import math
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scipy.stats import spearmanr

from simpletvm import verification
from simpletvm.driver import run_checked
from simpletvm.executor import StageExecutor, StageRequest
from simpletvm.jobdir import read_json
from simpletvm.turns import in_turns

if TYPE_CHECKING:
    from evaluation.ways import BenchJob


@dataclass
class Fidelity:
    """One job's profile fidelity under one way."""

    spearman: list[float] = field(default_factory=list)  # one per batch of >= 3 candidates
    cvs: list[float] = field(default_factory=list)  # one per candidate measured during the run
    inflation: list[float] = field(default_factory=list)  # run median / isolated median
    # task -> (run median, isolated median, hash) of every candidate searched for it
    pairs: dict[int, list[tuple[float, float, str]]] = field(default_factory=dict)
    kept: dict[int, str] = field(default_factory=dict)  # task -> the hash the compiler gets
    # per verified task: (verification changed the search's pick, the search's pick over the
    # kept candidate, both at their verified times)
    verification: list[tuple[bool, float]] = field(default_factory=list)

    @property
    def regret(self) -> float | None:
        """The kernel the way kept (after verification), timed alone, over the best kernel among
        everything it measured, timed alone; the worst task. 1.0: its measurements cost nothing.
        Free of search luck: both kernels come from the same candidates."""
        worst = None
        for task, pairs in self.pairs.items():
            alone = {h: b for _, b, h in pairs}
            kept = alone.get(self.kept.get(task, ""), min(pairs)[1])
            best = min(alone.values())
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
    # without the final build, a profile stage re-measures a round (not the final benchmark)
    shutil.copytree(job_dir, scratch, ignore=shutil.ignore_patterns("art", "result", "final",
                                                                     "*.tar"))
    fid = Fidelity(kept=kept_kernels(job_dir), verification=verification_effect(job_dir))
    for round_dir in sorted((job_dir / "rounds").glob("r*")):
        results_path = round_dir / "results.json"
        plan = read_json(round_dir / "candidates.json")
        if not results_path.exists() or verification.is_verify_plan(plan):
            continue
        ran = read_json(results_path)["results"]
        fid.cvs += [c for c in (_cv(r.get("run_secs")) for r in ran) if c is not None]
        round_ = int(round_dir.name[1:])
        for stage in ("build", "profile"):
            run_checked(executor, StageRequest(stage, str(scratch), round_, cores))
        alone = read_json(scratch / "rounds" / round_dir.name / "results.json")["results"]
        pairs = [(a, b, c["hash"]) for a, b, c in
                 ((_median_secs(x), _median_secs(y), c)
                  for x, y, c in zip(ran, alone, plan["candidates"], strict=True))
                 if a is not None and b is not None]
        fid.inflation += [a / b for a, b, _ in pairs if b > 0]
        if plan.get("task") is not None:
            fid.pairs.setdefault(int(plan["task"]), []).extend(pairs)
        if len(pairs) >= 3:
            rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
            if rho == rho:  # NaN when one side is constant
                fid.spearman.append(float(rho))
        shutil.rmtree(scratch / "rounds" / round_dir.name / "art", ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return fid


def final_latencies(job: BenchJob, target: dict[str, Any], record_dirs: dict[str, Path],
                    rounds: int = 10, repeat: int = 10) -> dict[str, float]:
    """Latency (us) of `job`'s model compiled with each way's records, timed alone.

    Every way is compiled first; then they take turns `rounds` times, in alternating order
    (A B C, C B A, ...), each taking the median of `repeat` samples per turn. A slow moment of
    the machine lands on all ways of a turn alike, so each way's latency is its time relative
    to the others turn by turn, scaled by the median turn (simpletvm.turns), not the median
    of its own turns. Key "untuned": no records.
    """
    compiled: dict[str, Any] = {"untuned": job.load().target(target).compile()}
    for way, tasks_dir in record_dirs.items():
        compiled[way] = job.load().target(target).use_records(tasks_dir).compile()
    samples: dict[str, list[float]] = {way: [] for way in compiled}
    order = list(compiled)
    for _ in range(rounds):
        for way in order:
            samples[way].append(
                compiled[way].benchmark(repeat=repeat, baseline=False).latency.median_us)
        order.reverse()
    return in_turns(samples)


def _verified(job_dir: Path) -> dict[int, dict[str, Any]]:
    """Task index -> its verification summary, for the tasks that have one."""
    out = {}
    for task_dir in sorted((job_dir / "tasks").glob("[0-9]*")):
        summary = verification.summary(task_dir)
        if summary is not None and summary["kept"] is not None:
            out[int(task_dir.name)] = summary
    return out


def verification_effect(job_dir: Path) -> list[tuple[bool, float]]:
    """Per verified task: whether verification kept another candidate than the search's pick,
    and the search's pick over the kept one, both as verification timed them. The kept one
    may be the task's default schedule (timed in verification, never searched)."""
    effect = []
    for summary in _verified(job_dir).values():
        timed = [c for c in summary["candidates"] if c["verified_us"] is not None]
        searched = [c for c in timed if c.get("search_us") is not None]  # not the default
        if not searched:
            continue
        pick = min(searched, key=lambda c: c["search_us"])
        kept = next(c for c in timed if c["hash"] == summary["kept"])
        effect.append((pick["hash"] != kept["hash"], pick["verified_us"] / kept["verified_us"]))
    return effect


def kept_kernels(job_dir: Path) -> dict[int, str]:
    """Per task, the hash of the candidate the records database hands the compiler: the
    verified pick where the task was verified, else the least mean run time searched."""
    best: dict[int, tuple[float, str]] = {}
    for d in sorted((job_dir / "rounds").glob("r*")):
        plan = read_json(d / "candidates.json")
        if not (d / "results.json").exists() or verification.is_verify_plan(plan):
            continue
        results = read_json(d / "results.json")["results"]
        for cand, res in zip(plan["candidates"], results, strict=True):
            if res.get("run_secs") and plan.get("task") is not None:
                mean = statistics.fmean(res["run_secs"])
                if mean < best.get(int(plan["task"]), (math.inf, ""))[0]:
                    best[int(plan["task"])] = (mean, cand["hash"])
    kept = {task: h for task, (_, h) in best.items()}
    return kept | {task: s["kept"] for task, s in _verified(job_dir).items()}


def measured_candidates(job_dir: Path) -> list[list[str]]:
    """The structural hashes a job searched, round by round (verification rounds left out:
    each way verifies its own leading candidates)."""
    plans = [read_json(d / "candidates.json") for d in sorted((job_dir / "rounds").glob("r*"))]
    return [[c["hash"] for c in p["candidates"]] for p in plans
            if not verification.is_verify_plan(p)]
