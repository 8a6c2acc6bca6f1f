"""Budget allocation across a job's tasks: which task the next batch goes to, and how big it is.

Round robin by fewest trials gives every task the same trials whatever its share of the model's
time, and with a budget of two batches it never reaches the third task: in the run that asked
for this, two small tasks took all 64 trials and the two largest convolutions none. Instead:

1. **Warm-up, largest share first.** Every task that matters gets one batch before any gets a
   second, in order of its share of the model (weight x FLOPs, the only estimate there is before
   a measurement), so a budget that cannot reach every task reaches the biggest. When the budget
   is small against the tasks still waiting, warm-up batches shrink to budget / tasks (at least
   MIN_BATCH), so each of them is measured; a remainder under MIN_BATCH joins the batch before
   it (within the job's batch size) rather than paying for a round of its own. Tasks under
   NEGLIGIBLE of the model (a reshape, a bias add) come only after every other task is
   exhausted.
2. **Then by expected gain** (Ansor's gradient task scheduler, Zheng et al. 2020, section 6):
   a task's contribution is weight x its best time; the next batch goes where that is expected
   to fall most per trial: ALPHA x the fall per trial over its last WINDOW batches (what it has
   been doing) + (1 - ALPHA) x contribution / trials (optimistic: what a task that has had few
   trials for its size may still give). A task whose every candidate failed counts as no gain;
   ties go to fewest trials.

Pure: works on what progress.json holds (simpletvm.jobdir), no TVM.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_BATCH = 8  # a smaller batch would pay a whole round's stages for too few measurements
NEGLIGIBLE = 0.01  # of the model's weight x FLOPs: tuned only once everything else is done
WINDOW = 3  # batches of a task the backward gradient looks at (Ansor's)
ALPHA = 0.2  # weight of the backward gradient against the optimistic one (Ansor's)


@dataclass(frozen=True)
class TaskView:
    """What the allocator knows of one task."""

    share: float  # its weight x FLOPs over the model's (0..1)
    weight: int  # how many times the model calls it
    exhausted: bool  # the search will not tune it any more
    # per batch it had, in order: (its trials after the batch, its best time in us so far, or
    # None while nothing it measured ran)
    history: tuple[tuple[int, float | None], ...] = ()

    @property
    def trials(self) -> int:
        return self.history[-1][0] if self.history else 0

    @property
    def best_us(self) -> float | None:
        return self.history[-1][1] if self.history else None


def choose(tasks: list[TaskView], batch_size: int, budget_left: int,
           skip: frozenset[int] = frozenset()) -> tuple[int, int] | None:
    """(task, batch) of the next search round; None when the budget is spent or no task is
    open (not exhausted, not in `skip`)."""
    open_ = [i for i, t in enumerate(tasks) if not t.exhausted and i not in skip]
    if budget_left <= 0 or not open_:
        return None
    batch = min(batch_size, budget_left)
    mattering = [i for i in open_ if tasks[i].share >= NEGLIGIBLE] or open_
    waiting = [i for i in mattering if not tasks[i].history]
    if waiting:
        task = max(waiting, key=lambda i: (tasks[i].share, -i))
        return task, warmup_batch(batch_size, budget_left, len(waiting))
    task = max(mattering, key=lambda i: (gain(tasks[i]), -tasks[i].trials, -i))
    return task, batch


def warmup_batch(batch_size: int, budget_left: int, waiting: int) -> int:
    """The batch of a task's first round, when `waiting` tasks (this one included) still wait
    for theirs: the job's batch, or an equal part of the budget left when that is smaller
    (at least MIN_BATCH, or the job's batch if smaller); what would be left under that goes
    into this batch when the job's batch allows. Never more than the job's batch."""
    least = min(MIN_BATCH, batch_size)
    batch = min(batch_size, budget_left, max(least, budget_left // waiting))
    if waiting == 1 and budget_left - batch < least and budget_left <= batch_size:
        batch = budget_left
    return batch


def gain(task: TaskView) -> float:
    """Expected fall of the model's time (us) per trial spent on `task`: see the module's 2."""
    if task.best_us is None or task.trials == 0:
        return 0.0
    now = task.weight * task.best_us
    earlier = [(t, b) for t, b in task.history[:-1] if b is not None][-WINDOW:]
    backward = 0.0
    if earlier:
        trials_then, best_then = earlier[0]
        if task.trials > trials_then:
            backward = task.weight * (best_then - task.best_us) / (task.trials - trials_then)
    return ALPHA * backward + (1 - ALPHA) * now / task.trials


def views(shares: list[float], weights: list[int], exhausted: list[bool],
          curve: list[dict]) -> list[TaskView]:
    """TaskViews of a job's tasks from its progress curve (simpletvm.jobdir.Progress.curve):
    each point of a task's search batch or warm-start import is a batch of it; verification
    and goal rounds are not."""
    histories: list[list[tuple[int, float | None]]] = [[] for _ in shares]
    trials = [0] * len(shares)
    best: list[float | None] = [None] * len(shares)
    before = 0
    for point in curve:
        task = point.get("task")
        if task is not None and not point.get("verify") and not point.get("goal"):
            trials[task] += point["trials"] - before
            batch_best = point.get("batch_best_us")
            if batch_best is not None and (best[task] is None or batch_best < best[task]):
                best[task] = batch_best
            histories[task].append((trials[task], best[task]))
        before = point.get("trials", before)
    return [TaskView(s, w, e, tuple(h))
            for s, w, e, h in zip(shares, weights, exhausted, histories, strict=True)]
