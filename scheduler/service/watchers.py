"""Watchers: the clients following a job (WatchJob streams), each a queue of record copies."""

from __future__ import annotations

import queue

from scheduler.service.records import JobRecord

Update = tuple[float, JobRecord, str]  # (time, the job's record then, a message)


class Watchers:
    """Queues per job id. Not thread-safe: the daemon calls it under its lock."""

    def __init__(self) -> None:
        self._queues: dict[str, list[queue.Queue]] = {}

    def subscribe(self, record: JobRecord, now: float) -> queue.Queue:
        """A queue that holds the job's record now, then every change."""
        q: queue.Queue = queue.Queue()
        q.put((now, record.copy(), "watching"))
        self._queues.setdefault(record.job_id, []).append(q)
        return q

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        subscribers = self._queues.get(job_id, [])
        if q in subscribers:
            subscribers.remove(q)
        if not subscribers:
            self._queues.pop(job_id, None)

    def notify(self, record: JobRecord, now: float) -> None:
        subscribers = self._queues.get(record.job_id)
        if subscribers:
            copy = record.copy()
            for q in subscribers:
                q.put((now, copy, ""))
