"""SQLite (WAL) persistence of the daemon's authoritative state.

The core's state is rebuilt on start from its latest snapshot plus the events logged after it
(the core is deterministic, so replay gives the same state). Job records and the lease timeline
are written in the same transaction as the event that changed them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, now REAL NOT NULL, event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    seq INTEGER PRIMARY KEY, now REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, request_id TEXT, record TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_request ON jobs(request_id) WHERE request_id != '';
CREATE TABLE IF NOT EXISTS leases (lease_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""



class Store:
    """One connection, used under the daemon's lock (check_same_thread off for gRPC threads)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def ensure(self, schema: str) -> None:
        """Create the tables of `schema` if missing (another module's tables, same file)."""
        with self._lock:
            self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- transactions --------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self)

    # ---- reads ---------------------------------------------------------------------------
    def latest_snapshot(self) -> tuple[int, dict[str, Any]] | None:
        row = self._db.execute(
            "SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def events_after(self, seq: int) -> Iterator[tuple[int, float, dict[str, Any]]]:
        for row in self._db.execute(
                "SELECT seq, now, event FROM events WHERE seq > ? ORDER BY seq", (seq,)):
            yield row[0], row[1], json.loads(row[2])

    def last_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return row[0] or 0

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT record FROM jobs")]

    def job_by_request(self, request_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT record FROM jobs WHERE request_id = ?",
                               (request_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def leases(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT record FROM leases")]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement (the record store's tables)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def meta(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default


class _Transaction:
    """`with store.transaction() as tx:` — everything inside commits together or not at all."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store._db

    def __enter__(self) -> _Transaction:
        self.store._lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.store._lock.release()

    def log_event(self, now: float, event: dict[str, Any]) -> int:
        cur = self.db.execute("INSERT INTO events (now, event) VALUES (?, ?)",
                              (now, json.dumps(event)))
        return int(cur.lastrowid)

    def snapshot(self, seq: int, now: float, data: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO snapshots (seq, now, data) VALUES (?, ?, ?)",
                        (seq, now, json.dumps(data)))
        self.db.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))
        self.db.execute("DELETE FROM events WHERE seq <= ?", (seq,))

    def put_job(self, job_id: str, request_id: str, record: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO jobs (job_id, request_id, record) VALUES (?, ?, ?)",
                        (job_id, request_id, json.dumps(record)))

    def put_lease(self, lease_id: str, record: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO leases (lease_id, record) VALUES (?, ?)",
                        (lease_id, json.dumps(record)))

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a statement in this transaction (the record store's tables); its rows."""
        return self.db.execute(sql, params).fetchall()

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
