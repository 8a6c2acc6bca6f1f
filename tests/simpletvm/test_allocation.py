"""Budget allocation across a job's tasks (simpletvm.allocation): pure, no TVM."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simpletvm import allocation
from simpletvm.allocation import MIN_BATCH, TaskView


def run_job(shares: list[float], budget: int, batch: int,
            best_after=lambda task, trials: 100.0 / (1 + trials)) -> list[tuple[int, int]]:
    """The rounds (task, batch) a job gets until its budget is spent, each task's best time
    after a batch given by `best_after(task, its trials)`."""
    curve: list[dict] = []
    trials = [0] * len(shares)
    rounds = []
    while True:
        tasks = allocation.views(shares, [1] * len(shares), [False] * len(shares), curve)
        choice = allocation.choose(tasks, batch, budget - sum(trials))
        if choice is None:
            return rounds
        task, size = choice
        rounds.append(choice)
        trials[task] += size
        curve.append({"task": task, "trials": sum(trials),
                      "batch_best_us": best_after(task, trials[task])})


def test_a_small_budget_reaches_every_task_that_matters_largest_first() -> None:
    # the model: five tasks, the two largest convolutions 79k and 87k of 224k FLOPs;
    # round robin with batches of 32 gave 64 trials to tasks 0 and 1 and none to 2 and 3
    shares = [f / 224 for f in (20, 18, 79, 87, 20)]
    rounds = run_job(shares, budget=64, batch=32)
    assert [task for task, _ in rounds] == [3, 2, 0, 4, 1]  # by share, ties by index
    assert sum(size for _, size in rounds) == 64
    assert all(size >= MIN_BATCH for _, size in rounds)
    # a large budget keeps the job's batch
    assert {size for _, size in run_job(shares, budget=256, batch=32)} == {32}


def test_a_remainder_under_min_batch_joins_the_last_warm_up_batch() -> None:
    assert allocation.warmup_batch(32, budget_left=13, waiting=1) == 13
    assert allocation.warmup_batch(32, budget_left=64, waiting=5) == 12
    assert allocation.warmup_batch(32, budget_left=20, waiting=2) == 10
    assert allocation.warmup_batch(32, budget_left=30, waiting=2) == 15
    assert allocation.warmup_batch(32, budget_left=36, waiting=1) == 32  # never over the batch
    assert allocation.warmup_batch(16, budget_left=20, waiting=2) == 10
    assert allocation.warmup_batch(16, budget_left=12, waiting=2) == MIN_BATCH  # then 4 more
    assert allocation.warmup_batch(4, budget_left=8, waiting=1) == 4  # the job's batch is less
    assert allocation.warmup_batch(32, budget_left=10, waiting=3) == MIN_BATCH


def test_negligible_tasks_wait_until_everything_else_is_exhausted() -> None:
    views = [TaskView(0.002, 1, False), TaskView(0.998, 1, False)]
    assert allocation.choose(views, 32, 64) == (1, 32)
    assert allocation.choose(views, 32, 64, skip=frozenset({1})) == (0, 32)
    tuned = [TaskView(0.002, 1, False), TaskView(0.998, 1, False, ((32, 50.0),))]
    assert allocation.choose(tuned, 32, 32)[0] == 1  # not the negligible one, even untouched


def test_after_warm_up_the_batch_goes_where_the_model_time_falls_most() -> None:
    # the same time now, the same trials: the one still falling goes first
    flat = TaskView(0.5, 1, False, ((32, 50.0), (64, 50.0), (96, 50.0)))
    falling = TaskView(0.5, 1, False, ((32, 100.0), (64, 70.0), (96, 50.0)))
    assert allocation.gain(falling) > allocation.gain(flat) > 0
    assert allocation.choose([flat, falling], 32, 64)[0] == 1
    # a task with far more of the model's time left goes first even if flat (optimism)
    big = TaskView(0.5, 1, False, ((32, 400.0), (64, 400.0), (96, 400.0)))
    assert allocation.choose([big, falling], 32, 64)[0] == 0
    # a task called four times counts four times its kernel
    heavy = TaskView(0.5, 4, False, ((32, 30.0),))
    light = TaskView(0.5, 1, False, ((32, 100.0),))
    assert allocation.choose([light, heavy], 32, 64)[0] == 1
    # everything it measured failed: no expected gain (it waits behind the others)
    failed = TaskView(0.5, 1, False, ((32, None),))
    assert allocation.gain(failed) == 0 and allocation.choose([failed, light], 32, 64)[0] == 1
    assert allocation.choose([flat, falling], 32, 0) is None
    assert allocation.choose([TaskView(1.0, 1, True)], 32, 64) is None


def test_views_read_batches_imports_and_skip_verification_and_goal_rounds() -> None:
    curve = [{"round": -1, "task": 1, "trials": 24, "records": 5, "import": True,
              "batch_best_us": 40.0},
             {"round": -1, "task": None, "trials": 24, "import": True},
             {"round": 0, "task": 0, "trials": 36, "batch_best_us": 90.0},
             {"round": 1, "task": 1, "trials": 44, "batch_best_us": 45.0},
             {"round": 2, "task": None, "trials": 44, "goal": True},
             {"round": 3, "task": 0, "trials": 52, "batch_best_us": 70.0},
             {"round": 4, "task": None, "trials": 52, "verify": True}]
    first, second = allocation.views([0.6, 0.4], [1, 2], [False, True], curve)
    assert first.history == ((12, 90.0), (20, 70.0)) and first.trials == 20
    assert second.history == ((24, 40.0), (32, 40.0)) and second.best_us == 40.0
    assert second.exhausted and second.weight == 2


@settings(max_examples=60, deadline=None)
@given(shares=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
       budget=st.integers(0, 400), batch=st.integers(1, 64))
def test_the_budget_is_spent_exactly_and_every_batch_fits_the_job(
        shares: list[float], budget: int, batch: int) -> None:
    rounds = run_job(shares, budget, batch)
    assert sum(size for _, size in rounds) == budget
    assert all(0 < size <= batch for _, size in rounds)
