"""Same task, same trial budget: TVM's own `tune_tasks` loop vs our separate-process stages.

    python bench/bench_stages.py [--model conv2d] [--trials 64] [--batch 32]

Each way tunes in a fresh work dir; then the model is compiled with that way's records and its
latency re-measured under the same conditions. Prints one table: best latency and wall time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simpletvm import SimpleTVM, zoo
from simpletvm.driver import create_job, drive
from simpletvm.executor import StageExecutor
from simpletvm.spec import JobSpec


def tvm_way(model: str, shape: list[int], target: dict, trials: int, batch: int, builder: str,
            work: Path) -> tuple[float, float]:
    tvm = SimpleTVM.from_zoo(model, shape).target(target)
    tvm.tune(trials=trials, work_dir=work, batch_size=batch, builder=builder)
    wall = tvm.report()["tuning"]["wall_s"]
    return wall, tvm.compile().benchmark(repeat=50).latency.median_us


def stages_way(model: str, shape: list[int], target: dict, trials: int, batch: int,
               work: Path) -> tuple[float, float, dict]:
    spec = JobSpec(name="bench", target=target, trials=trials, batch_size=batch,
                   model=f"zoo:{model}", input_shapes={"x": shape})
    job = create_job(work, spec)
    executor = StageExecutor()
    times: dict[str, float] = {}

    def record(name: str, _round: int, outcome) -> None:
        times[name] = times.get(name, 0.0) + outcome.finished - outcome.started

    started = time.perf_counter()
    drive(job, executor, cores=sorted(__import__("os").sched_getaffinity(0)), on_stage=record)
    wall = time.perf_counter() - started - times.pop("compile", 0.0)
    tvm = SimpleTVM.from_zoo(model, shape).target(target).use_records(job.root / "tasks")
    return wall, tvm.compile().benchmark(repeat=50).latency.median_us, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="conv2d")
    parser.add_argument("--shape", default=None,
                        help="the model's input shape, e.g. 128,128 (default: the zoo's)")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    shape = ([int(s) for s in args.shape.split(",")] if args.shape
             else list(zoo.INPUTS[args.model]["x"]))
    target = {"kind": "llvm", "num-cores": args.cores}
    root = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    rows = []
    for builder in ("local", "fast"):
        wall, lat = tvm_way(args.model, shape, target, args.trials, args.batch, builder,
                            root / f"tvm-{builder}")
        rows.append((f"TVM tune_tasks, {builder} builder", wall, lat, ""))
    wall, lat, times = stages_way(args.model, shape, target, args.trials, args.batch,
                                  root / "stages")
    split = " ".join(f"{k}={v:.1f}s" for k, v in times.items())
    rows.append(("tunesched stages, one process each", wall, lat, split))
    shutil.rmtree(root, ignore_errors=True)

    ref_wall, ref_lat = rows[0][1], rows[0][2]
    table = Table(title=f"{args.model} {shape}, {args.trials} trials, batch {args.batch}, "
                        f"llvm num-cores={args.cores}")
    for col in ("way", "tuning wall s", "wall / TVM local", "wall / TVM fast",
                "best model latency us", "latency / TVM local", "stage time split"):
        table.add_column(col)
    for name, wall, lat, note in rows:
        table.add_row(name, f"{wall:.1f}", f"{wall / ref_wall:.2f}", f"{wall / rows[1][1]:.2f}",
                      f"{lat:.2f}", f"{lat / ref_lat:.2f}", note)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
