"""Benchmark sweeps: a TOML file lists models x targets x trials x batch sizes; run them all.

    [sweep]
    name = "cpu-small"
    way = "stages"            # "stages" (separate processes) or "tvm" (TVM's own loop)
    round_size = 16           # candidates per tuning round

    [[matrix]]
    model = ["zoo:mlp", "zoo:convnet"]      # zoo:NAME or a path to an .onnx file
    target = ["cpu"]                         # preset or JSON dict string
    trials = [16, 32]
    batch = [1, 4]                           # input batch size (first input dimension)

Each combination is tuned in its own job directory; results go to results.csv, results.json and
sweep.png in the output directory.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simpletvm import zoo
from simpletvm.errors import SimpleTVMError
from simpletvm.spec import JobSpec
from simpletvm.targets import parse_target

WAYS = ("stages", "tvm")


@dataclass(frozen=True)
class SweepPoint:
    """One combination of the matrix."""

    model: str
    target: str
    trials: int
    batch: int


@dataclass
class SweepResult:
    """What one point measured."""

    model: str
    target: str
    trials: int
    batch: int
    way: str
    tuning_wall_s: float
    untuned_us: float
    tuned_us: float
    speedup: float
    error: str = ""


@dataclass
class Sweep:
    """A parsed sweep file."""

    name: str
    way: str
    round_size: int
    points: list[SweepPoint]


def _list(table: dict[str, Any], key: str, default: list[Any] | None = None) -> list[Any]:
    value = table.get(key, default)
    if value is None:
        raise SimpleTVMError(f"sweep matrix entry lacks {key!r}: give a list, e.g. {key} = [...]")
    return value if isinstance(value, list) else [value]


def load(path: str | Path) -> Sweep:
    """Parse and validate a sweep file; SimpleTVMError with the offending field otherwise."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SimpleTVMError(f"cannot read sweep file {path}: {exc}") from exc
    head = data.get("sweep", {})
    way = head.get("way", "stages")
    if way not in WAYS:
        raise SimpleTVMError(f"sweep way {way!r} is unknown: use one of {', '.join(WAYS)}")
    points = []
    for table in data.get("matrix", []):
        for model, target, trials, batch in itertools.product(
                _list(table, "model"), _list(table, "target", ["cpu"]),
                _list(table, "trials"), _list(table, "batch", [1])):
            if not isinstance(trials, int) or trials <= 0:
                raise SimpleTVMError(f"trials must be positive integers, got {trials!r}")
            if not isinstance(batch, int) or batch <= 0:
                raise SimpleTVMError(f"batch must be positive integers, got {batch!r}")
            parse_target(target)
            points.append(SweepPoint(str(model), str(target), trials, batch))
    if not points:
        raise SimpleTVMError(f"sweep file {path} has no [[matrix]] entries")
    return Sweep(head.get("name", Path(path).stem), way, int(head.get("round_size", 32)), points)


def _onnx_bytes(model: str, batch: int) -> bytes:
    if model.startswith("zoo:"):
        proto = zoo.build(model[4:])
        shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        return zoo.build(model[4:], [batch, *shape[1:]]).SerializeToString()
    return Path(model).read_bytes()


def _run_stages(point: SweepPoint, round_size: int, work: Path) -> SweepResult:
    from simpletvm.driver import create_job, drive
    from simpletvm.executor import StageExecutor

    spec = JobSpec(name=f"{point.model}-{point.trials}", target=parse_target(point.target),
                   trials=point.trials, batch_size=round_size, model=point.model)
    job = create_job(work, spec, onnx_bytes=_onnx_bytes(point.model, point.batch))
    started = time.perf_counter()
    report = drive(job, StageExecutor(), cores=sorted(os.sched_getaffinity(0)))
    wall = time.perf_counter() - started - report["compile_s"]
    return SweepResult(point.model, point.target, point.trials, point.batch, "stages", wall,
                       report["untuned"]["median_us"], report["tuned"]["median_us"],
                       report["speedup"])


def _run_tvm(point: SweepPoint, round_size: int, work: Path) -> SweepResult:
    from simpletvm.api import SimpleTVM

    net = SimpleTVM.from_onnx(_onnx_bytes(point.model, point.batch)).target(point.target)
    net.tune(trials=point.trials, work_dir=work, batch_size=round_size).benchmark()
    rep = net.report()
    return SweepResult(point.model, point.target, point.trials, point.batch, "tvm",
                       rep["tuning"]["wall_s"], rep["untuned"]["median_us"],
                       rep["tuned"]["median_us"], rep["speedup"])


def run(sweep: Sweep, out_dir: str | Path,
        on_point: Callable[[int, SweepPoint, SweepResult | None], None] | None = None
        ) -> list[SweepResult]:
    """Run every point (a failed point is recorded with its error, the sweep goes on)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runner = _run_stages if sweep.way == "stages" else _run_tvm
    results = []
    for i, point in enumerate(sweep.points):
        if on_point:
            on_point(i, point, None)
        try:
            result = runner(point, sweep.round_size, out / "jobs" / f"{i:03d}")
        except SimpleTVMError as exc:
            result = SweepResult(point.model, point.target, point.trials, point.batch,
                                 sweep.way, 0.0, 0.0, 0.0, 0.0, error=str(exc))
        results.append(result)
        if on_point:
            on_point(i, point, result)
        write(results, out)
    from simpletvm.plots import plot_sweep

    plot_sweep(results, out / "sweep.png", title=sweep.name)
    return results


def write(results: list[SweepResult], out: Path) -> None:
    """results.csv and results.json."""
    rows = [asdict(r) for r in results]
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SweepResult.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
