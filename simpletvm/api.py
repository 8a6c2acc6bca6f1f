"""SimpleTVM: one obvious, chainable way to import, tune, compile and benchmark a model.

    SimpleTVM.from_zoo("resnet18", input_shape=(1, 3, 32, 32)).target("cpu") \
        .tune(trials=256, work_dir="tuning").compile().benchmark().export("model.so")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simpletvm import benchmark, models, tasks, tvmloop, zoo
from simpletvm.benchmark import Latency
from simpletvm.errors import SimpleTVMError
from simpletvm.targets import TargetSpec, device_type, parse_target, to_tvm
from simpletvm.verification import open_records


class SimpleTVM:
    """A model on its way to a tuned, compiled library. Methods return self unless noted."""

    def __init__(self, mod: Any, source: str) -> None:
        self._mod = mod
        self._source = source
        self._target: TargetSpec = parse_target("cpu")
        self._tasks: list[tasks.Task] | None = None
        self._database: Any = None
        self._tuning: dict[str, Any] = {}
        self._executable: Any = None
        self._latency: Latency | None = None
        self._untuned_latency: Latency | None = None

    # ---- sources ---------------------------------------------------------------------------
    @classmethod
    def from_onnx(cls, path: str | Path | bytes,
                  input_shapes: dict[str, list[int]] | None = None) -> SimpleTVM:
        """From an ONNX file (or its bytes); `input_shapes` fixes dynamic dimensions."""
        source = "onnx" if isinstance(path, bytes) else str(path)
        return cls(models.import_onnx(models.read_onnx(path), input_shapes), source)

    @classmethod
    def from_relax(cls, mod: Any, params: dict[str, Any] | None = None) -> SimpleTVM:
        """From a Relax IRModule with a "main" function; `params` are bound as constants."""
        if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
            raise SimpleTVMError("the Relax module has no 'main' function: rename your entry "
                                 "function to main")
        return cls(models.bind_params(mod, params), "relax")

    @classmethod
    def from_zoo(cls, name: str, input_shape: Sequence[int] | None = None,
                 **options: Any) -> SimpleTVM:
        """From a built-in model: matmul, mlp, convnet, resnet_tiny, resnet18."""
        return cls(models.import_onnx(zoo.build(name, input_shape, **options)), f"zoo:{name}")

    # ---- configuration ---------------------------------------------------------------------
    def target(self, spec: str | TargetSpec) -> SimpleTVM:
        """"cpu", "cuda", a JSON string or a dict such as {"kind": "llvm", "num-cores": 2}."""
        self._target = parse_target(spec)
        self._tasks = self._database = self._executable = None
        self._latency = self._untuned_latency = None
        return self

    # ---- work ------------------------------------------------------------------------------
    def extract(self) -> SimpleTVM:
        """Find the tuning tasks (see `.tasks`)."""
        self._tasks = tasks.extract(self._mod, self._target)
        return self

    def tune(self, trials: int, work_dir: str | Path, batch_size: int = 32, seed: int = 0,
             builder: str = "fast", database: str | Path | None = None) -> SimpleTVM:
        """Tune in this process with TVM's own loop (`tune_tasks`): the scheduler-less way.
        `database`: a folder that remembers records across runs, per target and machine: known
        records seed the search and count toward `trials` (a second run of the same model
        tunes only what is left), new ones are added."""
        if trials <= 0:
            raise SimpleTVMError(f"trials must be positive, got {trials}")
        self._database, wall, known = tvmloop.tune(self._mod, self._target, work_dir, trials,
                                                   batch_size, seed, builder, memory=database)
        self._tuning = {"trials": trials, "wall_s": wall, "work_dir": str(work_dir),
                        "known_trials": known}
        self._executable = None
        return self

    def use_records(self, records_dir: str | Path) -> SimpleTVM:
        """Compile with records of an earlier run (a JSONDatabase folder or a tree of them; a
        task's `verified/` records win over its search records)."""
        self._database = open_records(records_dir)
        if self._database is None:
            raise SimpleTVMError(f"no MetaSchedule records under {records_dir}")
        self._executable = None
        return self

    def compile(self) -> SimpleTVM:
        """Build the model: with the tuning records if any, else TVM's default pipeline."""
        from tvm import relax
        from tvm.s_tir import meta_schedule as ms

        if self._database is not None:
            self._executable = ms.relax_integration.compile_relax(
                self._database, self._mod, to_tvm(self._target), params=None)
        else:
            self._executable = relax.build(self._mod, target=to_tvm(self._target))
        return self

    def benchmark(self, repeat: int = 20, baseline: bool = True) -> SimpleTVM:
        """Time the compiled model (see `.latency`); with `baseline`, also compile and time the
        untuned build for comparison (see `.untuned_latency`)."""
        from tvm import relax

        if self._executable is None:
            self.compile()
        specs, device = models.input_specs(self._mod), device_type(self._target)
        self._latency, _ = benchmark.measure(self._executable, specs, device, repeat)
        if baseline:
            untuned = relax.build(self._mod, target=to_tvm(self._target))
            self._untuned_latency, _ = benchmark.measure(untuned, specs, device, repeat)
        return self

    def export(self, path: str | Path) -> Path:
        """Write the compiled library (a shared object) and return its path."""
        if self._executable is None:
            self.compile()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        self._executable.export_library(str(out))
        return out

    # ---- results ---------------------------------------------------------------------------
    @property
    def module(self) -> Any:
        return self._mod

    @property
    def executable(self) -> Any:
        """The compiled Relax executable (compiles on first use)."""
        if self._executable is None:
            self.compile()
        return self._executable

    @property
    def tasks(self) -> list[tasks.Task]:
        if self._tasks is None:
            self.extract()
        return list(self._tasks or [])

    @property
    def latency(self) -> Latency | None:
        return self._latency

    @property
    def untuned_latency(self) -> Latency | None:
        return self._untuned_latency

    def report(self) -> dict[str, Any]:
        """Everything known so far, as plain data."""
        out: dict[str, Any] = {"model": self._source, "target": self._target,
                               "inputs": [s.to_dict() for s in models.input_specs(self._mod)]}
        if self._tasks is not None:
            out["tasks"] = [{"name": t.name, "weight": t.weight, "flops": t.flops}
                            for t in self._tasks]
        if self._tuning:
            out["tuning"] = dict(self._tuning)
        if self._latency:
            out["tuned"] = self._latency.to_dict()
        if self._latency and self._untuned_latency:
            out["untuned"] = self._untuned_latency.to_dict()
            out["speedup"] = self._untuned_latency.median_us / self._latency.median_us
        return out
