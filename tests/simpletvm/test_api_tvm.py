"""SimpleTVM end to end with TVM's own tuning loop: tune, compile, benchmark, export, report."""

from __future__ import annotations

import pytest

from simpletvm import SimpleTVM, SimpleTVMError

pytestmark = pytest.mark.tvm


def test_chain_tunes_benchmarks_exports_and_reports(tmp_path) -> None:
    net = SimpleTVM.from_zoo("matmul", (1, 128)).target({"kind": "llvm", "num-cores": 1})
    assert net.extract().tasks[0].flops > 0
    net.tune(trials=8, work_dir=tmp_path / "tune", batch_size=8).compile().benchmark(repeat=5)
    report = net.report()
    assert report["tuning"]["trials"] == 8 and report["tasks"]
    for key in ("mean_us", "median_us", "p90_us", "cv"):
        assert report["tuned"][key] > 0 and report["untuned"][key] > 0
    assert report["speedup"] == report["untuned"]["median_us"] / report["tuned"]["median_us"]
    lib = net.export(tmp_path / "model.so")
    import tvm

    assert lib.stat().st_size > 0 and tvm.runtime.load_module(str(lib)) is not None
    assert list((tmp_path / "tune").glob("*.json"))  # TVM's own records


def test_bad_trials_and_relax_without_main() -> None:
    net = SimpleTVM.from_zoo("mlp")
    with pytest.raises(SimpleTVMError, match="trials must be positive"):
        net.tune(trials=0, work_dir="unused")
    import tvm

    with pytest.raises(SimpleTVMError, match="no 'main'"):
        SimpleTVM.from_relax(tvm.IRModule({}))


def test_benchmark_without_baseline_times_only_the_compiled_model() -> None:
    net = SimpleTVM.from_zoo("matmul", (1, 32)).target({"kind": "llvm", "num-cores": 1})
    report = net.compile().benchmark(repeat=3, baseline=False).report()
    assert report["tuned"]["median_us"] > 0
    assert "untuned" not in report and net.untuned_latency is None
    net.benchmark(repeat=3)
    assert net.untuned_latency is not None and "speedup" in net.report()
    net.target({"kind": "llvm", "num-cores": 2})  # another target: old timings no longer hold
    assert net.latency is None and net.untuned_latency is None


def test_a_tuning_database_carries_records_over_between_runs(tmp_path) -> None:
    """`tune(database=DIR)`: a second run of the same model knows the first's records and
    tunes only what its budget has left; another target keeps its records apart."""
    one_core = {"kind": "llvm", "num-cores": 1}
    first = SimpleTVM.from_zoo("matmul", (1, 64)).target(one_core)
    first.tune(trials=8, work_dir=tmp_path / "a", batch_size=8, database=tmp_path / "memory")
    assert first.report()["tuning"]["known_trials"] == 0
    again = SimpleTVM.from_zoo("matmul", (1, 64)).target(one_core)
    again.tune(trials=8, work_dir=tmp_path / "b", batch_size=8, database=tmp_path / "memory")
    assert again.report()["tuning"]["known_trials"] == 8
    assert not list((tmp_path / "b").glob("*.json"))  # nothing left to tune: no search ran
    again.compile().benchmark(repeat=3, baseline=False)  # compiles with the known records
    more = SimpleTVM.from_zoo("matmul", (1, 64)).target(one_core)
    more.tune(trials=16, work_dir=tmp_path / "c", batch_size=8, database=tmp_path / "memory")
    assert more.report()["tuning"]["known_trials"] == 8
    two = SimpleTVM.from_zoo("matmul", (1, 64)).target({"kind": "llvm", "num-cores": 2})
    two.tune(trials=8, work_dir=tmp_path / "d", batch_size=8, database=tmp_path / "memory")
    assert two.report()["tuning"]["known_trials"] == 0
    assert len([p for p in (tmp_path / "memory").iterdir() if p.is_dir()]) == 2
