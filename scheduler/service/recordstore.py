"""The daemon's tuning memory: every job's committed records, across jobs, by target key.

Kept in the daemon's SQLite file beside the job state and written in the same transaction as
the state bundle they came from, so a kill -9 loses neither or both. Bounded: the best `keep`
records per (scope, workload, target key), and a count of every trial measured there. A cost
model per target key (the cost model of the last job that brought `model_every` new records)
starts jobs whose shapes nobody tuned. No TVM here: records are JSON lines
(simpletvm.tuningdb).

A record a job's verification round timed again (simpletvm.verification) is kept at that time:
a search batch timed in a lucky minute would otherwise hand every later job its luck.

Scope: "" when records are shared by every user (the default), else the user's name
(`--records-scope user`).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.service.blobs import BlobStore
from scheduler.service.store import Store, _Transaction
from simpletvm.tuningdb import Database, Record, parse_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS rec_workloads (
    shash TEXT PRIMARY KEY, encoded TEXT NOT NULL, task TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rec_records (
    id INTEGER PRIMARY KEY, scope TEXT NOT NULL, target_key TEXT NOT NULL, shash TEXT NOT NULL,
    trace_hash TEXT NOT NULL, mean_s REAL NOT NULL, record TEXT NOT NULL, source TEXT NOT NULL,
    imported INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS rec_records_trace
    ON rec_records(scope, target_key, shash, trace_hash);
CREATE INDEX IF NOT EXISTS rec_records_best ON rec_records(scope, target_key, shash, mean_s);
CREATE TABLE IF NOT EXISTS rec_trials (
    scope TEXT NOT NULL, target_key TEXT NOT NULL, shash TEXT NOT NULL,
    trials INTEGER NOT NULL, PRIMARY KEY (scope, target_key, shash));
CREATE TABLE IF NOT EXISTS rec_ingested (
    job_id TEXT NOT NULL, task TEXT NOT NULL, lines INTEGER NOT NULL,
    PRIMARY KEY (job_id, task));
CREATE TABLE IF NOT EXISTS rec_models (
    scope TEXT NOT NULL, target_key TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (scope, target_key));
"""
MODELS = "_cost-models"  # the blob folder of the per-target-key cost models


@dataclass
class TaskRecords:
    """What one task of a job's state bundle holds: its workload and its records, in order;
    the first `imported` came from this store (the job's warm start). `verified`: record line
    -> its time when the job's verification round timed it again (seconds)."""

    dirname: str
    name: str
    shash: str
    encoded: str
    records: list[Record]
    imported: int = 0
    verified: dict[int, float] = field(default_factory=dict)


@dataclass
class StateRecords:
    """The records in a job's state bundle, and its cost model."""

    tasks: list[TaskRecords] = field(default_factory=list)
    cost_model: bytes | None = None
    target: dict[str, Any] | None = None  # as the job's runner resolved it (job.json)


def parse_state(bundle: bytes) -> StateRecords:
    """The records in a (verified) state bundle; tasks without a database are left out."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and (member.name.startswith("tasks/") or member.name in (
                    "progress.json", "cost_model.tar", "job.json")):
                files[member.name] = tar.extractfile(member).read()
    spec = json.loads(files.get("job.json", b"{}")) or {}
    out = StateRecords(cost_model=files.get("cost_model.tar"), target=spec.get("target"))
    if "tasks/index.json" not in files:
        return out
    known = (json.loads(files.get("progress.json", b"{}")) or {}).get("known") or {}
    imported = known.get("lines", {})
    for info in json.loads(files["tasks/index.json"]):
        dirname = f"{info['index']:02d}"
        workloads = files.get(f"tasks/{dirname}/db/database_workload.json", b"").decode()
        lines = files.get(f"tasks/{dirname}/db/database_tuning_record.json", b"").decode()
        db = parse_database(workloads, lines, f"tasks/{dirname}/db")
        if info["shash"] not in db.workloads:
            continue
        records = db.records.get(info["shash"], [])
        out.tasks.append(TaskRecords(dirname, info["name"], info["shash"],
                                     db.workloads[info["shash"]], records,
                                     int(imported.get(dirname, 0)),
                                     _verified_lines(files, dirname, len(records))))
    return out


def _verified_lines(files: dict[str, bytes], dirname: str, count: int) -> dict[int, float]:
    """Record line -> verified seconds, from the task's verification summary and its measured
    hashes (line for line with its records)."""
    summary = files.get(f"tasks/{dirname}/verified.json")
    hashes = files.get(f"tasks/{dirname}/measured.txt", b"").decode().split()
    if summary is None or len(hashes) != count:
        return {}
    times = {c["hash"]: c["verified_us"] * 1e-6 for c in json.loads(summary)["candidates"]
             if c.get("verified_us")}
    return {line: times[h] for line, h in enumerate(hashes) if h in times}


def _at_verified(task: TaskRecords, line: int, record: Record) -> Record:
    """The record at its verified time, if the job's verification timed it again."""
    seconds = task.verified.get(line)
    return record if seconds is None else Record(record.trace, [seconds], record.target,
                                                 record.args_info)


def _trace_hash(record: Record) -> str:
    return hashlib.sha1(json.dumps(record.trace, sort_keys=True).encode()).hexdigest()


class RecordStore:
    """Records across jobs. Writes go through the caller's transaction; reads are direct."""

    def __init__(self, store: Store, blobs: BlobStore, keep: int = 32,
                 model_every: int = 64) -> None:
        store.ensure(SCHEMA)
        self.store, self.blobs = store, blobs
        self.keep, self.model_every = keep, model_every

    # ---------------------------------------------------------------- writes
    def ingest(self, tx: _Transaction, job_id: str, scope: str, target_key: str,
               state: StateRecords, staged_model: Path | None = None) -> int:
        """Take in the records `state` holds that this store has not seen from `job_id`;
        the number of new ones. Trials count every new record, failed ones too.
        `staged_model`: the state's cost model, staged in the blob store (see `BlobStore`)."""
        added = 0
        for task in state.tasks:
            seen = tx.execute("SELECT lines FROM rec_ingested WHERE job_id = ? AND task = ?",
                              (job_id, task.dirname))
            start = max(seen[0][0] if seen else 0, task.imported)
            self._retime(tx, scope, target_key, task, start)
            fresh = [_at_verified(task, start + i, r)
                     for i, r in enumerate(task.records[start:])]
            if not fresh:
                continue
            self._add(tx, scope, target_key, task, fresh, job_id, imported=False)
            tx.execute("INSERT OR REPLACE INTO rec_ingested (job_id, task, lines) "
                       "VALUES (?, ?, ?)", (job_id, task.dirname, len(task.records)))
            added += len(fresh)
        if added and staged_model is not None:
            self._maybe_keep_model(tx, scope, target_key, added, staged_model)
        return added

    def add_imported(self, tx: _Transaction, scope: str, target_key: str,
                     db: Database) -> int:
        """Records imported from a database made elsewhere (marked imported); how many."""
        count = 0
        for shash, records in db.records.items():
            task = TaskRecords("", "imported", shash, db.workloads[shash], records)
            self._add(tx, scope, target_key, task, records, "import", imported=True)
            count += len(records)
        return count

    def _add(self, tx: _Transaction, scope: str, target_key: str, task: TaskRecords,
             records: list[Record], source: str, imported: bool) -> None:
        tx.execute("INSERT OR IGNORE INTO rec_workloads (shash, encoded, task) VALUES (?, ?, ?)",
                   (task.shash, task.encoded, task.name))
        for record in records:
            if not record.ran:
                continue
            tx.execute(
                "INSERT INTO rec_records (scope, target_key, shash, trace_hash, mean_s, record, "
                "source, imported) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(scope, target_key, shash, trace_hash) DO UPDATE SET "
                "record = CASE WHEN excluded.mean_s < mean_s THEN excluded.record ELSE record "
                "END, mean_s = MIN(mean_s, excluded.mean_s)",
                (scope, target_key, task.shash, _trace_hash(record), record.mean_s,
                 json.dumps(record.to_json()), source, int(imported)))
        tx.execute(
            "DELETE FROM rec_records WHERE scope = ? AND target_key = ? AND shash = ? AND id NOT "
            "IN (SELECT id FROM rec_records WHERE scope = ? AND target_key = ? AND shash = ? "
            "ORDER BY mean_s LIMIT ?)",
            (scope, target_key, task.shash, scope, target_key, task.shash, self.keep))
        tx.execute(
            "INSERT INTO rec_trials (scope, target_key, shash, trials) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(scope, target_key, shash) DO UPDATE SET trials = trials + ?",
            (scope, target_key, task.shash, len(records), len(records)))

    def _retime(self, tx: _Transaction, scope: str, target_key: str, task: TaskRecords,
                upto: int) -> None:
        """Records kept already (lines before `upto`, reused ones too) that the job's
        verification timed again: they are kept at that time from now on."""
        for line, seconds in task.verified.items():
            if line < upto:
                record = _at_verified(task, line, task.records[line])
                tx.execute("UPDATE rec_records SET mean_s = ?, record = ? WHERE scope = ? AND "
                           "target_key = ? AND shash = ? AND trace_hash = ?",
                           (seconds, json.dumps(record.to_json()), scope, target_key,
                            task.shash, _trace_hash(record)))

    def _maybe_keep_model(self, tx: _Transaction, scope: str, target_key: str, added: int,
                          staged: Path) -> None:
        """Every `model_every` new records of a target key, its cost model becomes the latest
        job's (which learned from them)."""
        rows = tx.execute("SELECT since FROM rec_models WHERE scope = ? AND target_key = ?",
                          (scope, target_key))
        since = (rows[0][0] if rows else self.model_every) + added  # the first job's: kept
        if since >= self.model_every:
            self.blobs.commit(staged, MODELS, _model_name(scope, target_key))
            since = 0
        tx.execute("INSERT OR REPLACE INTO rec_models (scope, target_key, since) "
                   "VALUES (?, ?, ?)", (scope, target_key, since))

    # ---------------------------------------------------------------- reads
    def known(self, scope: str, target_key: str, shashes: list[str]) -> dict[str, Any]:
        """What a job of `target_key` with these workloads can start from: per workload, its
        best records (lines of a database record: [trace, run secs, target, args info]) and
        the trials measured for it so far."""
        tasks = {}
        for shash in shashes:
            trials = self.store.query(
                "SELECT trials FROM rec_trials WHERE scope = ? AND target_key = ? AND "
                "shash = ?", (scope, target_key, shash))
            records = self.store.query(
                "SELECT record FROM rec_records WHERE scope = ? AND target_key = ? AND "
                "shash = ? ORDER BY mean_s LIMIT ?", (scope, target_key, shash, self.keep))
            if records:
                tasks[shash] = {"trials": trials[0][0] if trials else len(records),
                                "records": [json.loads(r[0]) for r in records]}
        return {"target_key": target_key, "tasks": tasks}

    def cost_model(self, scope: str, target_key: str) -> bytes | None:
        return self.blobs.get(MODELS, _model_name(scope, target_key))

    def stats(self, scope: str | None = None) -> list[dict[str, Any]]:
        """Per target key: workloads, records (imported ones too), trials."""
        where, params = ("WHERE scope = ?", (scope,)) if scope is not None else ("", ())
        rows = self.store.query(
            f"SELECT scope, target_key, COUNT(DISTINCT shash), COUNT(*), SUM(imported) "
            f"FROM rec_records {where} GROUP BY scope, target_key ORDER BY target_key", params)
        trials = dict(((s, k), t) for s, k, t in self.store.query(
            f"SELECT scope, target_key, SUM(trials) FROM rec_trials {where} "
            f"GROUP BY scope, target_key", params))
        return [{"scope": s, "target_key": k, "workloads": w, "records": r,
                 "imported": i or 0, "trials": trials.get((s, k), 0)} for s, k, w, r, i in rows]

    def export(self, scope: str | None, key_prefix: str = "") -> Database:
        """The best records of every workload of the target keys starting with `key_prefix`,
        as one database (for several keys of one workload: all their records)."""
        db = Database()
        where, params = ("AND r.scope = ?", (scope,)) if scope is not None else ("", ())
        for shash, encoded, record in self.store.query(
                "SELECT r.shash, w.encoded, r.record FROM rec_records r JOIN rec_workloads w "
                f"ON r.shash = w.shash WHERE r.target_key LIKE ? ESCAPE '\\' {where} "
                "ORDER BY r.shash, r.mean_s", (_like(key_prefix), *params)):
            db.workloads.setdefault(shash, encoded)
            db.records.setdefault(shash, []).append(Record.from_json(json.loads(record)))
        return db


def _model_name(scope: str, target_key: str) -> str:
    return hashlib.sha1(f"{scope}\0{target_key}".encode()).hexdigest()[:20] + ".tar"


def _like(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
