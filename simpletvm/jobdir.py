"""The job directory: every stage reads and writes its state here, as JSON manifests and files.

    job.json                  the JobSpec (simpletvm.spec): what to tune, where, with which budget
    model/model.json          the imported Relax module (TVM JSON), model/inputs.json its inputs
    model/model.onnx          the ONNX source, when there is one
    tasks/index.json          [TaskInfo]
    tasks/NN/task.json        the task's workload (TVM JSON)
    tasks/NN/db/              the task's MetaSchedule JSONDatabase (simpletvm.taskdb: one writer)
    tasks/NN/measured.txt     structural hashes of every measured candidate
    tasks/NN/verified/        the task's leading candidates timed again (simpletvm.verification)
    tasks/NN/verified.json    that verification, pass by pass, and the candidate kept
    cost_model.tar            the job's XGBoost cost model (written by learn, read by search)
    known.json                what the scheduler knew of the job's workloads (simpletvm.tuningdb),
                              known_cost_model.tar a cost model of its target: the warm start
    progress.json             Progress: rounds done, trials, per-task best, tuning curve
    rounds/rNNNN/             candidates.json (search), built.json + art/ (build), results.json
    result/                   model.so, report.json, records.json (compile)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simpletvm.errors import JobDirError
from simpletvm.spec import JobSpec


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (write a temp file, then rename)."""
    write_bytes(path, json.dumps(data, indent=1).encode())


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically (write a temp file, then rename): never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def unwritable(root: Path, exc: OSError) -> JobDirError:
    """The one-line error for a job directory the disk refuses to write (full, read-only)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return JobDirError(f"cannot write job files under {root}: {exc.strerror}{where}")


def read_json(path: Path) -> Any:
    """Read a JSON manifest; JobDirError naming the file when it is missing or corrupt."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise JobDirError(f"{path} is missing: run the stage that writes it first") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise JobDirError(f"{path} is unreadable or corrupt: {exc}") from exc


@dataclass
class TaskInfo:
    """A task as listed in tasks/index.json."""

    index: int
    name: str
    weight: int
    flops: float
    shash: str

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}"


@dataclass
class TaskProgress:
    """Tuning progress of one task."""

    trials: int = 0
    best_us: float | None = None
    exhausted: bool = False  # the search will not tune it any more
    verified: bool = False  # its verification round is committed (even if nothing ran)
    verified_us: float | None = None  # the kept candidate's verified time


@dataclass
class Progress:
    """What the learn stages have committed so far (progress.json)."""

    rounds: int = 0
    trials: int = 0
    tasks: list[TaskProgress] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)
    cost_model_trained_size: int = 0
    # per task dir: bytes of database_tuning_record.json and measured.txt as of the last commit;
    # anything past them was written by a learn that died before committing progress.json
    committed_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    # the warm start (simpletvm.warmstart), once it happened: target key, what it took in
    # (records, tasks, trials they count for) and the record lines it put first in each task dir
    known: dict[str, Any] | None = None
    # latency goal rounds (simpletvm.goalcheck): the whole model measured against the goal
    goal_checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        tasks = [TaskProgress(**t) for t in data.get("tasks", [])]
        rest = {k: v for k, v in data.items() if k != "tasks"}
        return cls(tasks=tasks, **rest)

    @property
    def goal_met(self) -> bool:
        """Whether the last measurement of the whole model met the latency goal."""
        return bool(self.goal_checks) and bool(self.goal_checks[-1]["met"])

    def task_rows(self, infos: list[TaskInfo]) -> list[dict[str, Any]]:
        """One row per task for the people watching (the dashboard's task table): name,
        weight, FLOPs, trials, best and verified latency, whether it is still searched."""
        return [{"name": info.name, "weight": info.weight, "flops": info.flops,
                 "trials": task.trials, "best_us": task.best_us,
                 "verified_us": task.verified_us, "exhausted": task.exhausted}
                for info, task in zip(infos, self.tasks, strict=True)]

    def estimated_latency_us(self, infos: list[TaskInfo]) -> float | None:
        """Sum of weight x best latency over the tasks tuned (verified where verified); None
        until every task still searched has a measurement. A task done without one (its search
        found nothing, or it was too small to tune) counts as nothing."""
        total, measured = 0.0, False
        for info, task in zip(infos, self.tasks, strict=True):
            best = task.verified_us if task.verified_us is not None else task.best_us
            if best is None and not task.exhausted:
                return None
            if best is not None:
                total, measured = total + info.weight * best, True
        return total if measured else None


class JobDir:
    """Paths and manifests of one job directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def spec_path(self) -> Path:
        return self.root / "job.json"

    @property
    def model_path(self) -> Path:
        return self.root / "model" / "model.json"

    @property
    def onnx_path(self) -> Path:
        return self.root / "model" / "model.onnx"

    @property
    def cost_model_path(self) -> Path:
        return self.root / "cost_model.tar"

    @property
    def progress_path(self) -> Path:
        return self.root / "progress.json"

    @property
    def result_dir(self) -> Path:
        return self.root / "result"

    @property
    def final_dir(self) -> Path:
        """The compiled models the final benchmark times (not part of any bundle)."""
        return self.root / "final"

    def task_dir(self, info: TaskInfo) -> Path:
        return self.root / "tasks" / info.dirname

    def round_dir(self, round_: int) -> Path:
        return self.root / "rounds" / f"r{round_:04d}"

    def write_onnx(self, data: bytes) -> None:
        """model/model.onnx, atomically; JobDirError when the disk refuses it."""
        try:
            write_bytes(self.onnx_path, data)
        except OSError as exc:
            raise unwritable(self.root, exc) from exc

    def spec(self) -> JobSpec:
        return JobSpec.from_dict(read_json(self.spec_path))

    def write_spec(self, spec: JobSpec) -> None:
        write_json(self.spec_path, spec.to_dict())

    def tasks(self) -> list[TaskInfo]:
        return [TaskInfo(**t) for t in read_json(self.root / "tasks" / "index.json")]

    def write_tasks(self, infos: list[TaskInfo]) -> None:
        write_json(self.root / "tasks" / "index.json", [asdict(i) for i in infos])

    def progress(self) -> Progress:
        if not self.progress_path.exists():
            return Progress(tasks=[TaskProgress() for _ in self.tasks()])
        return Progress.from_dict(read_json(self.progress_path))

    def write_progress(self, progress: Progress) -> None:
        write_json(self.progress_path, progress.to_dict())
