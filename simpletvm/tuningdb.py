"""Tuning records as text: the MetaSchedule JSON database files read and written without TVM,
the target key records are filed under, and the known-records file a job starts from.

A MetaSchedule `JSONDatabase` is two files of JSON lines: `database_workload.json`, one
`[structural hash, encoded workload]` per workload, and `database_tuning_record.json`, one
`[workload index, [trace, run seconds, target, args info]]` per measured candidate. The daemon
keeps records across jobs in that form (it never loads TVM), exports them in it (plain TVM
opens the result), and hands a new job what it knows as a `known.json` (`KNOWN_FILE`) that the
job's first search takes in (simpletvm.warmstart).

The database ignores the target when queried (docs/design.md section 3), so records are filed
by target key: the target dict that affects code generation, and the model of the device that
timed them, since one target string can hide different machines.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simpletvm.errors import JobDirError
from simpletvm.spec import TARGET_KINDS

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
KNOWN_FILE = "known.json"  # in a job directory: what the daemon knew when its search began
KNOWN_COST_MODEL = "known_cost_model.tar"  # a cost model trained on the target key's records
FAILED_RUN_SECS = 1e10  # what MetaSchedule records for a candidate that did not run
_IGNORED_TARGET_KEYS = ("tag", "keys", "host")


def canonical_target(target: dict[str, Any]) -> str:
    """The target as one string: every key that shapes code generation, sorted."""
    return json.dumps({k: v for k, v in sorted(target.items()) if k not in _IGNORED_TARGET_KEYS},
                      sort_keys=True, separators=(",", ":"))


def target_key(target: dict[str, Any], device_model: str) -> str:
    """Where records of `target` timed on a `device_model` are filed ("<target>@<device>")."""
    return f"{canonical_target(target)}@{device_model or 'unknown device'}"


def cpu_model() -> str:
    """This machine's CPU model name ("" when /proc/cpuinfo does not say)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return " ".join(match.group(1).split()) if match else ""


def gpu_models() -> list[str]:
    """The model of each GPU nvidia-smi lists, in id order (none without a driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def device_model(kind: str, cpu: str, gpus: list[str]) -> str:
    """The device a target of `kind` is timed on: the first GPU for cuda, else the CPU."""
    return (gpus[0] if gpus else "") if kind == "cuda" else cpu


@dataclass
class Record:
    """One measured candidate, as a database line holds it (without its workload index)."""

    trace: Any
    run_secs: list[float]
    target: Any
    args_info: Any

    @property
    def ran(self) -> bool:
        return bool(self.run_secs) and max(self.run_secs) < FAILED_RUN_SECS

    @property
    def mean_s(self) -> float:
        return sum(self.run_secs) / len(self.run_secs) if self.ran else math.inf

    def to_json(self) -> list[Any]:
        return [self.trace, self.run_secs, self.target, self.args_info]

    @classmethod
    def from_json(cls, data: Any) -> Record:
        trace, run_secs, target, args_info = data
        if not isinstance(run_secs, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0
                for s in run_secs):
            raise ValueError("run seconds must be a list of non-negative numbers")
        return cls(trace, [float(s) for s in run_secs], target, args_info)


@dataclass
class Database:
    """A JSON database's contents: workloads (structural hash, encoded IR) and records per
    workload hash, in file order."""

    workloads: dict[str, str] = field(default_factory=dict)
    records: dict[str, list[Record]] = field(default_factory=dict)


def read_database(directory: Path) -> Database:
    """The workloads and records of the JSON database in `directory` (see `parse_database`)."""
    return parse_database(_text(directory / WORKLOAD_FILE), _text(directory / RECORD_FILE),
                          str(directory))


def parse_database(workload_text: str, record_text: str, where: str) -> Database:
    """A JSON database's contents from its two files' text; JobDirError, one line, for corrupt
    JSON, a record of an unknown workload or of an unknown target kind."""
    db = Database()
    order: list[str] = []
    for number, line in _lines(workload_text):
        try:
            item = json.loads(line)
            if not (isinstance(item, list) and len(item) == 2
                    and all(isinstance(x, str) for x in item)):
                raise ValueError("a workload is [hash, encoded IR]")
            shash, encoded = item
        except (ValueError, TypeError, RecursionError) as exc:
            raise _bad(f"{where}/{WORKLOAD_FILE}", number, exc) from None
        db.workloads[shash] = encoded
        order.append(shash)
    for number, line in _lines(record_text):
        try:
            item = json.loads(line)
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)
                    and len(item[1]) == 4):
                raise ValueError("a record is [workload index, [trace, run seconds, target, "
                                 "args info]]")
            index, data = item
            if not isinstance(index, int) or isinstance(index, bool) \
                    or not 0 <= index < len(order):
                raise ValueError(f"it names workload {index!r}, but the database has "
                                 f"{len(order)}")
            record = Record.from_json(data)
            kind = record.target.get("kind") if isinstance(record.target, dict) else None
            if kind not in TARGET_KINDS:
                raise ValueError(f"its target kind {kind!r} is not one of "
                                 f"{', '.join(TARGET_KINDS)}")
        except (ValueError, TypeError, RecursionError) as exc:
            raise _bad(f"{where}/{RECORD_FILE}", number, exc) from None
        db.records.setdefault(order[index], []).append(record)
    return db


def database_files(db: Database) -> dict[str, str]:
    """`db` as the two files of a JSON database: file name -> text."""
    order = list(db.workloads)
    index = {shash: i for i, shash in enumerate(order)}
    return {
        WORKLOAD_FILE: "".join(json.dumps([s, db.workloads[s]]) + "\n" for s in order),
        RECORD_FILE: "".join(json.dumps([index[shash], record.to_json()]) + "\n"
                             for shash, records in db.records.items() if shash in index
                             for record in records)}


def write_database(directory: Path, db: Database) -> None:
    """Write `db` as a JSON database that `ms.database.JSONDatabase(work_dir=directory)`
    opens."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in database_files(db).items():
        (directory / name).write_text(text)


def _text(path: Path) -> str:
    if not path.exists():
        return ""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise JobDirError(f"cannot read {path}: {exc}") from exc


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _bad(path: str, number: int, exc: BaseException) -> JobDirError:
    why = str(exc) if isinstance(exc, ValueError) and not isinstance(
        exc, json.JSONDecodeError) else f"not JSON ({type(exc).__name__})"
    return JobDirError(f"{path} line {number} is not a MetaSchedule record: {why}")
