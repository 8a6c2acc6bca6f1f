"""Tuning memory: what a job saves from what earlier jobs measured, through the real daemon
and runners (real TVM, one job at a time on this machine).

    python bench/bench_memory.py            # about 15 minutes on 2 cores
    python bench/bench_memory.py --quick    # smaller budgets: a smoke run (about 6 minutes)

Models are built here as ONNX graphs with sizes whose kernels take 0.1 ms or more: A, two
dense layers (64x256 -> 512 -> 256); A2, A retrained (the same layers, new weights); B, A's two
layers and two of its own (-> 128 -> 64); C, a 3x3 convolution of shapes no other job has
(32 -> 48 channels, 28x28). Scenarios, in order:

1. retrained model: A tuned cold, then A2: what it tunes new, how long it takes;
2. longer budget: A2 with twice A's budget: only the difference is tuned;
3. latency goal already met: A2 again with a larger budget and a goal 25% above A's measured
   latency (its compile stage's median): it should end after its goal round, tuning nothing;
4. shared layers: B cold (`fresh`) against B after A: new trials until B reaches cold B's final
   estimated latency;
5. new shapes: C cold (`fresh`) against C after the rest (only the target key's cost model
   carries over): new trials until it reaches cold C's final estimate.

Final latencies: every job's model compiled with its records and timed in alternating turns
(simpletvm.turns); the noise control is A's model timed twice as two entries. The table and
a PNG of estimated latency against new trials (cold and warm) go to bench/results/memory.md
and memory.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scheduler.core import TERMINAL_JOB_STATES, SchedulerConfig
from scheduler.service.config import DaemonConfig
from scheduler.testing import LocalCluster, wait_for
from simpletvm import SimpleTVM
from simpletvm.spec import JobSpec
from simpletvm.turns import in_turns

RESULTS = Path(__file__).parent / "results"
# the goal scenario's goal: this much above A's measured latency. 1.10 in runs 1-3, where two
# measurements of one model minutes apart differed by up to 13% (the noise control): a 10%
# margin sat inside the noise, so the scenario asked for less than "a goal the known records
# meet". Chosen after seeing runs 1-3 (bench/results/RESULTS.md says so).
GOAL_SLACK = 1.25
SAME = 0.02  # two latencies are the same within 2% or the noise control, whichever is more
CORES = sorted(os.sched_getaffinity(0))
TARGET = {"kind": "llvm", "num-cores": len(CORES)}


# ---------------------------------------------------------------------- models
def dense_model(widths: list[int], batch: int, seed: int,
                relu: tuple[bool, ...] | None = None) -> bytes:
    """Dense layers widths[0] -> widths[1] -> ..., each followed by a ReLU where `relu` says
    (default: between layers, none after the last)."""
    relu = relu if relu is not None else tuple(i < len(widths) - 2
                                               for i in range(len(widths) - 1))
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (fin, fout) in enumerate(itertools.pairwise(widths)):
        w = numpy_helper.from_array((rng.standard_normal((fout, fin)) / fin**0.5)
                                    .astype("float32"), f"w{i}")
        b = numpy_helper.from_array(np.zeros(fout, "float32"), f"b{i}")
        inits += [w, b]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"y{i}"], transB=1))
        x = f"y{i}"
        if relu[i]:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    return _model(nodes, inits, [batch, widths[0]], x, [batch, widths[-1]])


def conv_model(cin: int, cout: int, hw: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.1)
                                .astype("float32"), "w")
    b = numpy_helper.from_array(np.zeros(cout, "float32"), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return _model(nodes, [w, b], [1, cin, hw, hw], "y", [1, cout, hw, hw])


def _model(nodes: list[Any], inits: list[Any], shape: list[int], out: str,
           out_shape: list[int]) -> bytes:
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            out, TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


MODELS = {"A": dense_model([256, 512, 256], 64, seed=1),
          "A2": dense_model([256, 512, 256], 64, seed=2),
          # A's two layers as they are in A (the second without a ReLU), then two of its own
          "B": dense_model([256, 512, 256, 128, 64], 64, seed=3,
                           relu=(True, False, True, False)),
          "C": conv_model(32, 48, 28, seed=4)}


# ---------------------------------------------------------------------- running jobs
@dataclass
class Run:
    """One job: its info when it ended, its report, where its result went."""

    name: str
    info: Any
    report: dict[str, Any]
    result: Path
    attempts: int  # evolutionary searches run, over all its search rounds

    @property
    def new_trials(self) -> int:
        return self.info.trials_done - self.info.known_trials

    @property
    def wall_s(self) -> float:
        return self.info.finished_at - self.info.submitted_at

    def curve(self) -> list[tuple[int, float]]:
        """(new trials, estimated latency us) after each search round and the warm start."""
        known = self.info.known_trials
        return [(p["trials"] - known, p["estimated_latency_us"]) for p in self.report["curve"]
                if p.get("estimated_latency_us") is not None and not p.get("verify")]


def submit(cluster: LocalCluster, out: Path, name: str, model: str, **fields: Any) -> Run:
    spec = JobSpec(model=f"{model}.onnx", target=TARGET, batch_size=16, name=name, **fields)
    job = cluster.client.submit(spec, MODELS[model]).job_id
    print(f"  {name}: {fields}", file=sys.stderr, flush=True)
    info = wait_for(lambda: (lambda i: i if i.state in TERMINAL_JOB_STATES else None)(
        cluster.client.get(job)), 3600, f"{name} to end", interval=1.0)
    if info.state != "done":
        raise SystemExit(f"{name} ended {info.state}: {info.error}")
    cluster.client.fetch_result(job, out / name)
    report = json.loads((out / name / "report.json").read_text())
    rounds = cluster.work_dir("bench-host") / "jobs" / job / "rounds"
    attempts = sum(json.loads(p.read_text()).get("attempts", 0)
                   for p in rounds.glob("*/candidates.json"))
    print(f"    done in {info.finished_at - info.submitted_at:.0f} s: {info.trials_done} trials "
          f"({info.known_trials} known), reused {info.reused_records} records", file=sys.stderr)
    return Run(name, info, report, out / name, attempts)


def trials_to_reach(run: Run, target_us: float) -> int | None:
    """New trials after which the run's estimate first reached `target_us` (None: never)."""
    return next((n for n, lat in run.curve() if lat <= target_us * 1.0001), None)


def final_estimate(run: Run) -> float:
    return min(lat for _, lat in run.curve())


def time_models(runs: dict[str, Run], turns: int) -> dict[str, float]:
    """Each run's model compiled with its records, timed in alternating turns (us)."""
    compiled = {name: SimpleTVM.from_onnx(MODELS[name_model(run)]).target(TARGET)
                .use_records(run.result / "records").compile() for name, run in runs.items()}
    samples: dict[str, list[float]] = {name: [] for name in compiled}
    order = list(compiled)
    for _ in range(turns):
        for name in order:
            samples[name].append(compiled[name].benchmark(repeat=10, baseline=False)
                                 .latency.median_us)
        order.reverse()
    return in_turns(samples)


def name_model(run: Run) -> str:
    return run.report["model"].removesuffix(".onnx")


# ---------------------------------------------------------------------- the bench
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where memory.md/.png go")
    parser.add_argument("--turns", type=int, default=12, help="timing turns per model")
    args = parser.parse_args(argv)
    budget = 32 if args.quick else 64
    os.environ.setdefault("TVM_NUM_THREADS", str(len(CORES)))  # as the stages run kernels
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root, out = Path(tmp), Path(tmp) / "results"
        config = DaemonConfig(root / "state" / "scheduler.db",
                              core=SchedulerConfig(foreign_load_threshold=1.0))
        with LocalCluster(root, {"bench-host": 1}, cores=CORES, config=config) as cluster:
            a = submit(cluster, out, "A", "A", trials=budget)
            retrained = submit(cluster, out, "A2 retrained", "A2", trials=budget)
            longer = submit(cluster, out, "A2 longer", "A2", trials=2 * budget)
            # the goal: 10% above A's latency as its compile stage measured it (a stage
            # process, as the goal round's measurement is)
            goal_us = a.report["tuned"]["median_us"] * GOAL_SLACK
            goal = submit(cluster, out, "A2 goal", "A2", trials=8 * budget,
                          latency_goal_us=goal_us)
            # warm before cold: a fresh job takes nothing, but what it measures goes in
            b_warm = submit(cluster, out, "B after A", "B", trials=2 * budget)
            b_cold = submit(cluster, out, "B cold", "B", trials=2 * budget, fresh=True)
            c_warm = submit(cluster, out, "C warm model", "C", trials=budget)
            c_cold = submit(cluster, out, "C cold", "C", trials=budget, fresh=True)
            leases = cluster.client.timeline()
        runs = {r.name: r for r in (a, retrained, goal, longer, b_cold, b_warm, c_cold, c_warm)}
        timed = time_models({**runs, "A again": a}, args.turns)
        rows = _rows(runs, timed, goal_us) + _stage_rows(runs, leases)
        _plot({"B": (b_cold, b_warm), "C": (c_cold, c_warm)}, args.out / "memory.png")
    _write(rows, args, time.time() - started)
    return 0


def _rows(runs: dict[str, Run], timed: dict[str, float], goal_us: float) -> list[list[str]]:
    retrained, goal, longer = (runs[n] for n in ("A2 retrained", "A2 goal", "A2 longer"))
    b_cold, b_warm, c_cold, c_warm = (runs[n] for n in ("B cold", "B after A", "C cold",
                                                         "C warm model"))
    noise = abs(timed["A again"] / timed["A"] - 1)
    same = max(noise, SAME)
    check = (goal.report.get("goal_checks") or [{}])[-1]
    b_reach = trials_to_reach(b_warm, final_estimate(b_cold))
    c_reach = trials_to_reach(c_warm, final_estimate(c_cold))
    c_cold_reach = trials_to_reach(c_cold, final_estimate(c_cold))
    return [
        ["retrained model", f"{retrained.new_trials} new trials, done in "
         f"{retrained.wall_s:.0f} s; latency {timed['A2 retrained'] / timed['A']:.3f}x A's "
         f"(noise control {1 + noise:.3f}x)",
         _verdict(retrained.new_trials == 0 and retrained.wall_s <= 20
                  and abs(timed["A2 retrained"] / timed["A"] - 1) <= same)],
        ["goal met by known records", f"{goal.new_trials} new trials; goal {goal_us:.1f} us, "
         f"measured {check.get('measured_us') or float('nan'):.1f} us in its goal round",
         _verdict(goal.new_trials == 0 and bool(check.get("met")))],
        ["longer budget", f"{longer.new_trials} new trials of {longer.info.trial_budget} "
         f"({longer.info.known_trials} known); latency {timed['A2 longer'] / timed['A']:.3f}x "
         "the first run's", _verdict(longer.new_trials == longer.info.trial_budget
                                     - longer.info.known_trials
                                     and timed["A2 longer"] <= timed["A"] * (1 + same))],
        ["shared layers", f"B after A reached cold B's final estimate "
         f"({final_estimate(b_cold):.1f} us) after {_n(b_reach)} new trials; cold B used "
         f"{b_cold.new_trials} (reused {b_warm.info.reused_records} records for "
         f"{b_warm.info.reused_tasks}/{b_warm.info.tasks} tasks)",
         _verdict(b_reach is not None and b_reach <= b_cold.new_trials / 3)],
        ["new shapes", f"C with the target's cost model reached cold C's final estimate "
         f"({final_estimate(c_cold):.1f} us) after {_n(c_reach)} new trials; cold C after "
         f"{_n(c_cold_reach)}", "reported (no bar)"],
        ["final latencies (us)", ", ".join(f"{k} {v:.1f}" for k, v in timed.items()), ""],
    ]


def _stage_rows(runs: dict[str, Run], leases: list[dict[str, Any]]) -> list[list[str]]:
    """Where each job's time went: seconds per stage kind, summed over its leases."""
    rows = []
    for run in runs.values():
        spent: dict[str, float] = {}
        for lease in leases:
            if lease["job_id"] == run.info.job_id and lease["ended_at"]:
                spent[lease["stage"]] = spent.get(lease["stage"], 0.0) + (
                    lease["ended_at"] - lease["granted_at"])
        rows.append([f"stage seconds: {run.name}", ", ".join(
            f"{k} {spent[k]:.0f}" for k in ("extract", "search", "build", "profile", "learn",
                                             "compile") if k in spent)
            + f" ({run.attempts} evolutionary searches)", ""])
    return rows


def _n(value: int | None) -> str:
    return "never" if value is None else str(value)


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def _plot(pairs: dict[str, tuple[Run, Run]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(11, 4))
    for ax, (model, runs) in zip(axes, pairs.items(), strict=True):
        for run in runs:
            xs, ys, best = [], [], float("inf")
            for n, lat in run.curve():
                best = min(best, lat)
                xs.append(n)
                ys.append(best)
            ax.step(xs, ys, where="post", label=run.name)
        ax.set(title=f"model {model}", xlabel="new trials", ylabel="estimated latency (us)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write(rows: list[list[str]], args: argparse.Namespace, wall: float) -> None:
    command = "python bench/bench_memory.py" + (" --quick" if args.quick else "")
    lines = [f"`{command}` ({wall / 60:.0f} min on {len(CORES)} cores, "
             f"{time.strftime('%Y-%m-%d')})", "", "| scenario | measured | bar |",
             "|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", "![estimated latency against new trials](memory.png)", ""]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
