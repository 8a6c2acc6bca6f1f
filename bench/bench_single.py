"""One job alone: tunesched (a one-job service) against TVM's own loop, same model, target,
budget, batch and seed; then the models both produced, timed side by side.

    python bench/bench_single.py              # 3 models x budgets 64 and 256 x 3 ways (75 min)
    python bench/bench_single.py --quick      # 2 models, budget 64 (about 8 min)
    python bench/bench_single.py --models conv,resnet,mlp3 --out bench/results/single-set2
                                              # the second job set

Models (kernels of 0.05 ms or more, so timings judge schedules, not the thread pool's wake-up):
`odd`, built here with shapes no zoo model has (two convolutions, a flatten, two dense layers:
five tasks, one of them a reshape); `convnet`, the zoo's, on a 32x32 input; `dense`, two dense
layers of 64x256 -> 512 -> 256. A second set, never used to choose a constant: `conv`, a 3x3
convolution 32 -> 48 channels on 28x28; `resnet`, the zoo's resnet_tiny on a 64x64 input;
`mlp3`, three dense layers 32x384 -> 768 -> 384 -> 192.

Ways: `tvm` runs `SimpleTVM.tune` (TVM's `tune_tasks`, gradient task scheduler) in a fresh
process, then compiles: its wall is the process's, start to exit. `tunesched` submits the job
(`fresh`: nothing from earlier jobs) to an embedded daemon with one runner on this host: its wall
is submit to done, final benchmark included. `chameleon` is the same job with
`sampling="chameleon"` (simpletvm.sampling: one candidate measured per cluster of the search's
proposals). The ways rotate which goes first, model by model (`--ways` picks some).

Device time: `kernel s` is what each way's records say the kernels ran (samples x mean time,
the same formula for both); `device s` is what held the device: tunesched's profile leases
(verification and the final benchmark included) and, for TVM's loop, its LocalRunner's `run`
calls (timed in its process: `run` times every candidate of a batch before it returns). The
search-effort table gives the trials and device seconds each tunesched way took to reach, by
its own search timings, what TVM's records estimate at the largest budget.

Final latency: every model built with each way's records, the untuned build and ONNX Runtime
(as many threads as cores) timed in alternating turns (simpletvm.turns); the noise control is
TVM's model timed twice, as two entries. Writes bench/results/single.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_memory import TARGET, _model, conv_model, dense_model
from onnx import helper, numpy_helper

from scheduler.core import TERMINAL_JOB_STATES, SchedulerConfig
from scheduler.service.config import DaemonConfig
from scheduler.testing import LocalCluster, wait_for
from simpletvm import SimpleTVM, zoo
from simpletvm.spec import JobSpec
from simpletvm.turns import in_turns

RESULTS = Path(__file__).parent / "results"
WAYS = ["tvm", "tunesched", "chameleon"]
CORES = sorted(os.sched_getaffinity(0))
BATCH = 32
SEED = 0


def odd_model(seed: int = 7) -> bytes:
    """Conv 5->24 (3x3, 37x37), conv 24->40 (3x3, stride 2), flatten, dense 12960->96, dense
    96->10: shapes no zoo model has."""
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...]) -> Any:
        scale = 1 / math.sqrt(math.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype("float32"),
                                       name)

    inits = [init("w1", (24, 5, 3, 3)), init("w2", (40, 24, 3, 3)),
             init("d1", (96, 12960)), init("d2", (10, 96))]
    inits += [numpy_helper.from_array(np.zeros(n, "float32"), f"b{i}")
              for i, n in enumerate((24, 40, 96, 10))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b0"], ["c1"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b1"], ["c2"], kernel_shape=[3, 3],
                              strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "d1", "b2"], ["g1"], transB=1),
             helper.make_node("Relu", ["g1"], ["r3"]),
             helper.make_node("Gemm", ["r3", "d2", "b3"], ["y"], transB=1)]
    return _model(nodes, inits, [1, 5, 37, 37], "y", [1, 10])


MODELS = {"odd": odd_model, "convnet": lambda: zoo.model_bytes("convnet", {"x": [1, 3, 32, 32]}),
          "dense": lambda: dense_model([256, 512, 256], 64, seed=1),
          # a second job set, chosen after the first was run and never used to set a constant
          "conv": lambda: conv_model(32, 48, 28, seed=4),
          "resnet": lambda: zoo.model_bytes("resnet_tiny", {"x": [1, 3, 64, 64]}),
          "mlp3": lambda: dense_model([384, 768, 384, 192], 32, seed=5)}


@dataclass
class Tuned:
    """One way's run of one model at one budget."""

    way: str
    model: str
    budget: int
    wall_s: float
    records: Path  # a records tree SimpleTVM.use_records takes
    trials_per_task: dict[str, int]
    kernel_s: float
    device_s: float  # tunesched: its profile leases; TVM's loop: run to last result per batch
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.budget}/{self.way}"


# ---------------------------------------------------------------------- the two ways
TVM_CHILD = """
import json, sys, time
from pathlib import Path
from tvm.s_tir.meta_schedule.runner import local_runner as lr
from simpletvm import SimpleTVM
onnx_path, target, trials, work, batch, seed, spans_out = sys.argv[1:]
spans = []  # LocalRunner.run times every candidate before it returns: its calls' spans
run = lr.LocalRunner._cls.run
def timed_run(self, inputs):
    start = time.perf_counter()
    try:
        return run(self, inputs)
    finally:
        spans.append([start, time.perf_counter()])
lr.LocalRunner._cls.run = timed_run
m = SimpleTVM.from_onnx(onnx_path).target(json.loads(target))
m.tune(int(trials), work, batch_size=int(batch), seed=int(seed)).compile()
Path(spans_out).write_text(json.dumps(spans))
"""


def run_tvm(model: str, onnx_path: Path, budget: int, work: Path) -> Tuned:
    spans_path = work.with_suffix(".spans.json")
    work.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", TVM_CHILD, str(onnx_path), json.dumps(TARGET),
                    str(budget), str(work), str(BATCH), str(SEED), str(spans_path)],
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    per_task, kernel_s, best_us = _tvm_records(onnx_path, work)
    runner_s = sum(end - start for start, end in json.loads(spans_path.read_text()))
    return Tuned("tvm", model, budget, wall, work, per_task, kernel_s, runner_s,
                 {"best_us": best_us})


def _tvm_records(onnx_path: Path, work: Path) -> tuple[dict[str, int], float,
                                                      dict[str, float]]:
    """Trials per task, kernel seconds and each task's best search time (us, the median of
    its record's samples, as tunesched's progress keeps it) from the JSON database
    `tune_tasks` wrote."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(work_dir=str(work), module_equality="structural")
    per_task, kernel_s, best_us = {}, 0.0, {}
    for task in SimpleTVM.from_onnx(onnx_path).target(TARGET).tasks:
        records = db.get_top_k(db.commit_workload(task.mod), 1 << 30) \
            if db.has_workload(task.mod) else []
        per_task[task.name] = len(records)
        samples = [[float(s) for s in r.run_secs] for r in records]
        kernel_s += sum(_kernel_s(run_secs) for run_secs in samples)
        medians = [statistics.median(x) * 1e6 for x in samples if x and max(x) < 1e9]
        if medians:
            best_us[task.name] = min(medians)
    return per_task, kernel_s, best_us


def _kernel_s(run_secs: list[float]) -> float:
    """Seconds a record's kernel ran: its samples at their mean (failed runs: none)."""
    return 0.0 if not run_secs or max(run_secs) >= 1e9 else sum(run_secs)


def run_tunesched(cluster: LocalCluster, model: str, data: bytes, budget: int,
                  out: Path, way: str = "tunesched") -> Tuned:
    """One job through the daemon; way "chameleon" samples with simpletvm.sampling."""
    spec = JobSpec(model=f"{model}.onnx", target=TARGET, trials=budget, batch_size=BATCH,
                   seed=SEED, fresh=True, name=f"{model}-{budget}-{way}",
                   sampling="chameleon" if way == "chameleon" else "all")
    job = cluster.client.submit(spec, data).job_id
    info = wait_for(lambda: (lambda i: i if i.state in TERMINAL_JOB_STATES else None)(
        cluster.client.get(job)), 7200, f"{model} to end", interval=0.5)
    if info.state != "done":
        raise SystemExit(f"{model}/{budget} ended {info.state}: {info.error}")
    cluster.client.fetch_result(job, out)
    report = json.loads((out / "report.json").read_text())
    leases = [x for x in cluster.client.timeline() if x["job_id"] == job]
    spent: dict[str, float] = {}
    for lease in leases:
        spent[lease["stage"]] = spent.get(lease["stage"], 0.0) + (
            float(lease["ended_at"]) - float(lease["granted_at"]))
    kernel_s = sum(_kernel_s(json.loads(line)[1][1])
                   for f in (out / "records").glob("*/database_tuning_record.json")
                   for line in f.read_text().splitlines() if line.strip())
    kept_default = [t["name"] for t in report["tasks"] if t.get("kept_default")]
    profiles = sorted((float(x["granted_at"]), float(x["ended_at"])) for x in leases
                      if x["stage"] == "profile")
    return Tuned(way, model, budget, info.finished_at - info.submitted_at,
                 out / "records", {t["name"]: t["trials"] for t in report["tasks"]}, kernel_s,
                 spent.get("profile", 0.0),
                 {"stages": spent, "rounds": report["rounds"], "kept_default": kept_default,
                  "curve": report["curve"], "tasks": report["tasks"], "profiles": profiles})


def reached(run: Tuned, tvm_best_us: dict[str, float]) -> tuple[int, float] | None:
    """Trials and profile seconds until `run`'s search first estimated its model at or below
    TVM's records' estimate, one formula for both: the sum of weight x best search time over
    the tasks `run` tuned (a task it left untuned counts as nothing in either). Search rounds
    only (verification re-times, TVM's loop does not). None when it never got there."""
    tasks = [t for t in run.extra["tasks"] if t["trials"]]
    if any(t["name"] not in tvm_best_us for t in tasks):
        return None
    target = sum(t["weight"] * tvm_best_us[t["name"]] for t in tasks)
    for point in run.extra["curve"]:
        estimate = point.get("estimated_latency_us")
        if point.get("verify") or estimate is None or estimate > target:
            continue
        device_s = sum(min(end, point["time"]) - start
                       for start, end in run.extra["profiles"] if start < point["time"])
        return int(point["trials"]), device_s
    return None


# ---------------------------------------------------------------------- timing
def time_all(onnx_path: Path, runs: list[Tuned], turns: int) -> dict[str, float]:
    """us per entry: each run's model, TVM's model again (noise control), the untuned build
    and ONNX Runtime, timed in alternating turns."""
    import onnxruntime as ort

    timers: dict[str, Any] = {}
    for run in runs:
        built = SimpleTVM.from_onnx(onnx_path).target(TARGET).use_records(run.records).compile()
        timers[run.way] = _tvm_timer(built)
    tvm_run = next(r for r in runs if r.way == "tvm")
    timers["tvm again"] = _tvm_timer(SimpleTVM.from_onnx(onnx_path).target(TARGET)
                                     .use_records(tvm_run.records).compile())
    timers["untuned"] = _tvm_timer(SimpleTVM.from_onnx(onnx_path).target(TARGET).compile())
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(CORES)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype("float32")
            for i in session.get_inputs()}
    timers["onnxruntime"] = lambda: _median_us(lambda: session.run(None, feed))
    samples: dict[str, list[float]] = {k: [] for k in timers}
    order = list(timers)
    for _ in range(turns):
        for name in order:
            samples[name].append(timers[name]())
        order.reverse()
    return in_turns(samples)


def _tvm_timer(built: SimpleTVM) -> Any:
    return lambda: built.benchmark(repeat=10, baseline=False).latency.median_us


def _median_us(call: Any, repeat: int = 10, min_ms: float = 50.0) -> float:
    call()
    times = []
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while (time.perf_counter() - start) * 1e3 < min_ms:
            call()
            n += 1
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


# ---------------------------------------------------------------------- the bench
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="odd and dense, budget 64 only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where single.md goes")
    parser.add_argument("--turns", type=int, default=12, help="timing turns per model")
    parser.add_argument("--models", default=None, help="comma-separated subset of "
                        + ",".join(MODELS))
    parser.add_argument("--budgets", default=None, help="comma-separated (default 64,256)")
    parser.add_argument("--ways", default=",".join(WAYS),
                        help=f"comma-separated subset of {','.join(WAYS)} (tvm is required)")
    args = parser.parse_args(argv)
    args.ways = args.ways.split(",")
    if "tvm" not in args.ways or not set(args.ways) <= set(WAYS):
        parser.error(f"--ways must name tvm and any of {', '.join(WAYS[1:])}")
    models = args.models.split(",") if args.models else (
        ["odd", "dense"] if args.quick else list(MODELS))
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else (
        [64] if args.quick else [64, 256])
    os.environ.setdefault("TVM_NUM_THREADS", str(len(CORES)))  # as the stages run kernels
    started = time.time()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-single-") as tmp:
        root = Path(tmp)
        config = DaemonConfig(root / "state" / "scheduler.db",
                              core=SchedulerConfig(foreign_load_threshold=1.0))
        with LocalCluster(root, {"bench-host": 1}, cores=CORES, config=config) as cluster:
            for m_index, model in enumerate(models):
                data = MODELS[model]()
                onnx_path = root / f"{model}.onnx"
                onnx_path.write_bytes(data)
                for b_index, budget in enumerate(budgets):
                    turn = (m_index + b_index) % len(args.ways)
                    ways = args.ways[turn:] + args.ways[:turn]  # rotate which way goes first
                    runs = []
                    for way in ways:
                        print(f"{model} {budget}: {way}", file=sys.stderr, flush=True)
                        runs.append(run_tvm(model, onnx_path, budget, root / "tvm" / f"{model}-"
                                            f"{budget}") if way == "tvm" else run_tunesched(
                            cluster, model, data, budget, root / way / f"{model}-{budget}", way))
                        print(f"  {runs[-1].wall_s:.0f} s, trials {runs[-1].trials_per_task}",
                              file=sys.stderr, flush=True)
                    timed = time_all(onnx_path, runs, args.turns)
                    rows.append({"model": model, "budget": budget, "runs": runs,
                                 "timed": timed})
                    print("  timed (us): " + ", ".join(f"{k} {v:.1f}" for k, v in timed.items()),
                          file=sys.stderr, flush=True)
    _write(rows, args, time.time() - started)
    return 0


def _geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def _write(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> None:
    command = "python bench/bench_single.py" + (" --quick" if args.quick else "") + "".join(
        f" --{flag} {value}" for flag, value in (("models", args.models),
                                                 ("budgets", args.budgets)) if value)
    if args.ways != WAYS:
        command += " --ways " + ",".join(args.ways)
    lines = [f"`{command}` ({wall / 60:.0f} min on {len(CORES)} cores, "
             f"{time.strftime('%Y-%m-%d')}); target {json.dumps(TARGET)}, batch {BATCH}, "
             f"seed {SEED}", "",
             "| model | budget | way | wall way / TVM | latency way / TVM | way / untuned | "
             "TVM / untuned | way / ORT | noise (TVM twice) | kernel s way / TVM | "
             "device s way / TVM | rounds | trials per task way / TVM | default kept |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios: dict[tuple[int, str], dict[str, list[float]]] = {}
    for row in rows:
        runs = {r.way: r for r in row["runs"]}
        tv, t = runs["tvm"], row["timed"]
        noise = abs(t["tvm again"] / t["tvm"] - 1)
        for way in args.ways[1:]:
            ts = runs[way]
            r = ratios.setdefault((row["budget"], way), {k: [] for k in
                                                         ("wall", "lat", "untuned", "ort")})
            for key, value in (("wall", ts.wall_s / tv.wall_s), ("lat", t[way] / t["tvm"]),
                               ("untuned", t[way] / t["untuned"]),
                               ("ort", t[way] / t["onnxruntime"])):
                r[key].append(value)
            per_task = " ".join(f"{ts.trials_per_task.get(n, 0)}/{tv.trials_per_task.get(n, 0)}"
                                for n in tv.trials_per_task)
            lines.append(
                f"| {row['model']} | {row['budget']} | {way} | {ts.wall_s:.0f}/{tv.wall_s:.0f} s"
                f" = {ts.wall_s / tv.wall_s:.2f} | {t[way]:.1f}/{t['tvm']:.1f} us = "
                f"{t[way] / t['tvm']:.3f} | {t[way] / t['untuned']:.3f} | "
                f"{t['tvm'] / t['untuned']:.3f} | {t[way] / t['onnxruntime']:.2f} | "
                f"{100 * noise:.1f}% | {ts.kernel_s:.2f}/{tv.kernel_s:.2f} | "
                f"{ts.device_s:.0f}/{tv.device_s:.0f} | {ts.extra['rounds']} | {per_task} | "
                f"{', '.join(ts.extra['kept_default']) or '-'} |")
    lines += ["", "Geomean over the models:", "",
              "| budget | way | wall way / TVM | latency way / TVM | way / untuned | way / ORT |",
              "|---|---|---|---|---|---|"]
    for (budget, way), r in sorted(ratios.items()):
        lines.append(f"| {budget} | {way} | {_geomean(r['wall']):.3f} | "
                     f"{_geomean(r['lat']):.3f} | {_geomean(r['untuned']):.3f} | "
                     f"{_geomean(r['ort']):.2f} |")
    top = max(r["budget"] for r in rows)
    lines += ["", f"Search effort to reach TVM's {top}-trial estimate (sum of weight x best search"
              " time over the tasks the way tuned; TVM's from its records; `never`: not within "
              "the way's budget):", "",
              "| model | TVM: trials / runner s | " + " | ".join(
                  f"{w}: trials / profile s" for w in args.ways[1:]) + " |",
              "|---|---|" + "---|" * (len(args.ways) - 1)]
    for row in (r for r in rows if r["budget"] == top):
        runs = {r.way: r for r in row["runs"]}
        cells = []
        for way in args.ways[1:]:
            tuned = {t["name"] for t in runs[way].extra["tasks"] if t["trials"]}
            got = reached(runs[way], runs["tvm"].extra["best_us"])
            cells.append("n/a (TVM left a task untuned)"
                         if not tuned <= set(runs["tvm"].extra["best_us"])
                         else f"{got[0]} / {got[1]:.0f}" if got else "never")
        lines.append(f"| {row['model']} | {runs['tvm'].budget} / {runs['tvm'].device_s:.0f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Stage seconds of each tunesched job (summed leases):", ""]
    for row in rows:
        for way in args.ways[1:]:
            ts = next(r for r in row["runs"] if r.way == way)
            lines.append(f"- {row['model']}/{row['budget']} {way}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(ts.extra["stages"].items())))
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("single-quick.md" if args.quick else "single.md")).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
