"""Fast unit tests of simpletvm's pure helpers: ids, targets, manifests, zoo shapes."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

import simpletvm
from simpletvm import bundle, zoo
from simpletvm.cores import format_ids, parse_ids
from simpletvm.errors import JobDirError, ModelError, TargetError
from simpletvm.jobdir import JobDir, Progress, TaskInfo, TaskProgress, read_json
from simpletvm.spec import JobSpec
from simpletvm.stages.search import MAX_ATTEMPTS, fresh_candidates
from simpletvm.targets import device_type, num_cores, on_host, parse_target


def test_public_api_is_exported() -> None:
    for name in simpletvm.__all__:
        assert hasattr(simpletvm, name), name
    assert "SimpleTVM" in simpletvm.__all__


@pytest.mark.parametrize(("text", "ids"), [("0", [0]), ("0-3", [0, 1, 2, 3]),
                                           ("0,2,5-6", [0, 2, 5, 6]), ("3,1", [1, 3])])
def test_parse_ids(text: str, ids: list[int]) -> None:
    assert parse_ids(text) == ids
    assert parse_ids(format_ids(ids)) == ids


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "1-b", ","])
def test_parse_ids_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bad id list"):
        parse_ids(text)


def test_format_ids_compresses_runs() -> None:
    assert format_ids([0, 1, 2, 3, 6, 8, 9]) == "0-3,6,8-9"


def test_target_presets_and_forms() -> None:
    cpu = parse_target("cpu")
    assert cpu["kind"] == "llvm" and cpu["num-cores"] >= 1
    assert parse_target('{"kind": "llvm", "num-cores": 2}') == {"kind": "llvm", "num-cores": 2}
    assert parse_target({"kind": "llvm"})["num-cores"] >= 1
    assert device_type(cpu) == "cpu" and num_cores({"kind": "llvm", "num-cores": 3}) == 3
    cuda = parse_target("cuda")
    assert cuda["kind"] == "cuda" and device_type(cuda) == "cuda"
    # a job's "cpu" is left for the runner that takes it (all its cores)
    assert parse_target("cpu", check_with_tvm=False, resolve=False) == {"kind": "llvm"}
    assert parse_target('{"kind": "llvm", "mcpu": "znver3"}', check_with_tvm=False,
                        resolve=False) == {"kind": "llvm", "mcpu": "znver3"}
    assert on_host({"kind": "llvm"}, 6) == {"kind": "llvm", "num-cores": 6}
    assert on_host({"kind": "llvm", "num-cores": 2}, 6) == {"kind": "llvm", "num-cores": 2}
    assert on_host(cuda, 6) == cuda


@pytest.mark.parametrize(
    "bad", ["tpu", "{not json", '{"num-cores": 2}', '{"kind": "nosuch"}', "[]"])
def test_bad_targets_give_one_line_errors(bad: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_target(bad)
    message = str(err.value)
    assert "\n" not in message and "cpu" in message


def test_zoo_models_validate_and_reject_bad_shapes() -> None:
    for name, inputs in zoo.INPUTS.items():  # the table is what each builder makes
        model = zoo.build(name)
        assert model.graph.node, name
        made = {i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
                for i in model.graph.input}
        assert made == inputs, name
        assert zoo.input_ranks(name) == {n: len(shape) for n, shape in inputs.items()}
    assert [d.dim_value for d in zoo.build("mlp", (4, 32)).graph.input[0].type.tensor_type
            .shape.dim] == [4, 32]
    with pytest.raises(ModelError, match="rank 4"):
        zoo.build("resnet18", (1, 3, 32))
    with pytest.raises(ModelError, match="unknown zoo model"):
        zoo.build("vgg")


def test_job_manifests_roundtrip(tmp_path) -> None:
    job = JobDir(tmp_path)
    spec = JobSpec(name="j", target={"kind": "llvm", "num-cores": 2}, trials=64,
                   model="zoo:mlp", latency_goal_us=5.0)
    job.write_spec(spec)
    assert job.spec() == spec
    infos = [TaskInfo(0, "a", 2, 10.0, "h0"), TaskInfo(1, "b", 1, 5.0, "h1")]
    job.write_tasks(infos)
    assert job.tasks() == infos
    assert job.progress().tasks == [TaskProgress(), TaskProgress()]
    progress = Progress(rounds=1, trials=8, tasks=[TaskProgress(8, 3.0), TaskProgress(0, None)])
    job.write_progress(progress)
    assert job.progress() == progress
    assert progress.estimated_latency_us(infos) is None
    progress.tasks[1].best_us = 1.0
    assert progress.estimated_latency_us(infos) == 2 * 3.0 + 1.0


def test_missing_and_corrupt_manifests(tmp_path) -> None:
    with pytest.raises(JobDirError, match="missing"):
        JobDir(tmp_path).spec()
    (tmp_path / "job.json").write_text("{oops")
    with pytest.raises(JobDirError, match="corrupt"):
        read_json(tmp_path / "job.json")
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1}))
    assert read_json(tmp_path / "ok.json") == {"a": 1}


def test_bad_bundles_are_refused_in_one_line(tmp_path) -> None:
    job = JobDir(tmp_path / "job")
    job.root.mkdir()
    (job.root / "job.json").write_text(json.dumps({"name": "x"}))
    good = bundle.pack(job, "state")
    assert bundle.verify(good) == ["job.json"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        member = tarfile.TarInfo("../escape.json")
        member.size = 2
        tar.addfile(member, io.BytesIO(b"{}"))
    for bad, why in [(b"", "empty file"), (b"not a tar", "not a gzip file"),
                     (good[: len(good) // 2], "ended before"),
                     (buf.getvalue(), "outside the destination")]:
        for check in (bundle.verify, lambda d: bundle.unpack(d, tmp_path / "out")):
            with pytest.raises(JobDirError, match=f"corrupt or unsafe \\(.*{why}") as err:
                check(bad)
            assert "\n" not in str(err.value)


def test_the_model_travels_once_not_with_every_state(tmp_path) -> None:
    job = JobDir(tmp_path / "job")
    (job.root / "model").mkdir(parents=True)
    (job.root / "tasks" / "00").mkdir(parents=True)
    (job.root / "job.json").write_text(json.dumps({"name": "x"}))
    (job.root / "model" / "model.onnx").write_bytes(b"weights" * 1000)
    (job.root / "model" / "model.json").write_text("{}")
    (job.root / "tasks" / "00" / "task.json").write_text("{}")
    state, model = bundle.pack(job, "state"), bundle.pack(job, "model")
    assert bundle.verify(state) == ["job.json", "tasks/00/task.json"]
    assert bundle.verify(model) == ["model/model.json", "model/model.onnx"]
    (job.root / "job.json").write_text(json.dumps({"name": "later"}))
    later = bundle.pack(job, "state")
    moved = tmp_path / "moved"
    bundle.unpack(bundle.merge(model, state, later), moved)  # what a job that moves gets
    assert (moved / "model" / "model.onnx").read_bytes() == b"weights" * 1000
    assert json.loads((moved / "job.json").read_text()) == {"name": "later"}  # the later wins
    assert sorted(str(p.relative_to(moved)) for p in moved.rglob("*") if p.is_file()) == [
        "job.json", "model/model.json", "model/model.onnx", "tasks/00/task.json"]


def _pinned_profile(target: dict, cores: list[int], out: object) -> None:
    import os

    from simpletvm.stages.profile import pin_to_target

    pin_to_target(target, cores)
    out.put((sorted(os.sched_getaffinity(0)), os.environ.get("TVM_NUM_THREADS")))


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="needs two cores")
def test_profile_runs_on_the_targets_core_count_even_with_the_whole_host() -> None:
    import multiprocessing
    import os

    cores = sorted(os.sched_getaffinity(0))[:2]
    ctx = multiprocessing.get_context("fork")
    results = []
    for target in ({"kind": "llvm", "num-cores": 1}, {"kind": "llvm", "num-cores": 2},
                   {"kind": "llvm"}):
        out = ctx.Queue()
        proc = ctx.Process(target=_pinned_profile, args=(target, cores, out))
        proc.start()
        results.append(out.get(timeout=30))
        proc.join()
    assert results[0] == ([cores[0]], "1")
    assert results[1][0] == results[2][0] == sorted(os.sched_getaffinity(0))


def test_tasks_too_small_to_tune_are_done_and_do_not_block_the_estimate() -> None:
    from simpletvm.stages.extract import negligible

    infos = [TaskInfo(0, "conv", 1, 900.0, "h0"), TaskInfo(1, "reshape", 2, 10.0, "h1"),
             TaskInfo(2, "dense", 1, 80.0, "h2")]
    assert negligible(infos, 0.0) == set()
    assert negligible(infos, 0.05) == {1}  # 20 of 1000 weighted FLOPs
    assert negligible(infos, 0.5) == {1, 2}
    progress = Progress(tasks=[TaskProgress(best_us=5.0), TaskProgress(exhausted=True),
                               TaskProgress()])
    assert progress.estimated_latency_us(infos) is None  # the dense has no measurement yet
    progress.tasks[2].best_us = 2.0
    assert progress.estimated_latency_us(infos) == 7.0  # the untuned reshape counts as nothing


def test_known_trials_count_toward_the_budget_without_starving_new_layers() -> None:
    from simpletvm.warmstart import apportion

    two = Progress(tasks=[TaskProgress(), TaskProgress()])
    assert apportion({0: 33, 1: 31}, 64, two) == {0: 33, 1: 31}  # resubmitted: nothing new
    assert apportion({0: 33, 1: 31}, 128, two) == {0: 33, 1: 31}  # twice: the difference
    four = Progress(tasks=[TaskProgress() for _ in range(4)] + [TaskProgress(exhausted=True)])
    shared = apportion({0: 100, 1: 28}, 128, four)  # two of four tasks known, one heavily
    assert sum(shared.values()) == 64 and shared == {0: 50, 1: 14}  # 64 left for the new two
    assert apportion({}, 64, four) == {}


class _Search:
    """Stands in for MetaSchedule's evolutionary search: hands out its proposals in order and
    records what it was told was measured."""

    def __init__(self, *proposals: list[str]) -> None:
        self.proposals, self.marked = list(proposals), []

    def propose(self) -> list[str]:
        return self.proposals.pop(0) if self.proposals else []

    def mark(self, proposed: list[str]) -> None:
        self.marked.append(proposed)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_a_search_that_proposes_only_measured_schedules_is_asked_again(batch: int) -> None:
    """Even a batch of one (the last trial of a budget) asks again past a duplicate rather than
    giving the task up as exhausted."""
    search = _Search(["a"], ["b", "c", "d", "e"])
    found, asked = fresh_candidates(search.propose, search.mark, lambda h: {"hash": h}, {"a"},
                                    batch)
    assert [e["hash"] for e in found] == ["b", "c", "d", "e"][:batch]
    assert asked == 2 and search.marked == [["a"]]


def test_one_big_ask_keeps_the_first_new_schedules_and_makes_entries_of_them_only() -> None:
    """A fresh search's best picks are mostly schedules measured earlier: asked for more, one
    search gives a batch of new ones, in the order proposed, without asking again."""
    search = _Search(["a", "x", "b", "y", "c", "z", "w"])
    made: list[str] = []
    found, asked = fresh_candidates(search.propose, search.mark,
                                    lambda h: made.append(h) or {"hash": h}, {"a", "b", "c"}, 3,
                                    hash_of=lambda h: h)
    assert [e["hash"] for e in found] == ["x", "y", "z"] and made == ["x", "y", "z"]
    assert asked == 1 and search.marked == []


def test_a_search_with_nothing_new_stops_after_its_attempts() -> None:
    search = _Search(*[["a"]] * 10)
    found, asked = fresh_candidates(search.propose, search.mark, lambda h: {"hash": h}, {"a"}, 8)
    assert found == [] and asked == MAX_ATTEMPTS


def test_a_clearly_slower_candidate_is_timed_once() -> None:
    from simpletvm.stages.profile import adaptive

    asked: list[int] = []

    def sampler(times: list[float]):
        def samples(n: int) -> list[float]:
            asked.append(n)
            return [times.pop(0) for _ in range(n)]
        return samples

    assert adaptive(sampler([5.0, 4.0, 4.5]), 3, cutoff=2.0) == [5.0]  # over: one sample
    assert asked == [1]
    asked.clear()
    assert adaptive(sampler([1.5, 1.4, 1.6]), 3, cutoff=2.0) == [1.5, 1.4, 1.6]
    assert asked == [1, 2]
    asked.clear()
    assert adaptive(sampler([9.0, 9.0, 9.0]), 3, cutoff=float("inf")) == [9.0] * 3  # no best yet
    assert adaptive(sampler([9.0]), 1, cutoff=2.0) == [9.0]  # a verification pass: one anyway
    assert asked == [3, 1]
