"""What a job measured and what it kept, read back from its rounds (the paired comparison)."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.fidelity import kept_kernels, measured_candidates, verification_effect


def round_dir(job: Path, n: int, task: int, measured: dict[str, list[float] | None]) -> None:
    d = job / "rounds" / f"r{n:04d}"
    d.mkdir(parents=True)
    (d / "candidates.json").write_text(json.dumps(
        {"task": task, "candidates": [{"hash": h} for h in measured]}))
    (d / "results.json").write_text(json.dumps({"results": [
        {"run_secs": secs, "error": None if secs else "build failed"}
        for secs in measured.values()]}))


def test_kept_is_the_least_mean_per_task_across_rounds(tmp_path: Path) -> None:
    round_dir(tmp_path, 0, 0, {"a": [3.0, 3.0], "b": [1.0, 5.0], "c": None})
    round_dir(tmp_path, 1, 1, {"d": [2.0], "e": [1.5]})
    # the least single sample is b's, but the least mean is a later round's f
    round_dir(tmp_path, 2, 0, {"f": [2.9, 2.9]})
    assert kept_kernels(tmp_path) == {0: "f", 1: "e"}
    assert measured_candidates(tmp_path) == [["a", "b", "c"], ["d", "e"], ["f"]]


def test_a_round_without_results_counts_as_measured_but_keeps_nothing(tmp_path: Path) -> None:
    round_dir(tmp_path, 0, 0, {"a": [1.0]})
    (tmp_path / "rounds" / "r0001").mkdir()
    (tmp_path / "rounds" / "r0001" / "candidates.json").write_text(
        json.dumps({"task": 0, "candidates": [{"hash": "z"}]}))
    assert kept_kernels(tmp_path) == {0: "a"}
    assert measured_candidates(tmp_path) == [["a"], ["z"]]


def test_verification_decides_what_is_kept_and_is_not_a_measured_round(tmp_path: Path) -> None:
    round_dir(tmp_path, 0, 0, {"a": [1.0], "b": [1.2], "c": [3.0]})
    round_dir(tmp_path, 1, 1, {"d": [2.0]})
    verify = tmp_path / "rounds" / "r0002"
    round_dir(tmp_path, 2, 0, {"a": [1.3, 1.3], "b": [1.1, 1.1]})
    plan = json.loads((verify / "candidates.json").read_text())
    (verify / "candidates.json").write_text(json.dumps({**plan, "verify": {"passes": 2}}))
    task = tmp_path / "tasks" / "00"
    task.mkdir(parents=True)
    (task / "verified.json").write_text(json.dumps({"kept": "b", "candidates": [
        {"hash": "a", "search_us": 1e6, "verified_us": 1.3e6},
        {"hash": "b", "search_us": 1.2e6, "verified_us": 1.1e6}]}))
    assert kept_kernels(tmp_path) == {0: "b", 1: "d"}  # task 1 was not verified
    assert measured_candidates(tmp_path) == [["a", "b", "c"], ["d"]]
    changed, saved = verification_effect(tmp_path)[0]
    assert changed and abs(saved - 1.3 / 1.1) < 1e-9


def test_a_default_schedule_kept_by_verification_counts_as_a_change(tmp_path: Path) -> None:
    task = tmp_path / "tasks" / "00"
    task.mkdir(parents=True)
    (task / "verified.json").write_text(json.dumps({"kept": "dflt", "candidates": [
        {"hash": "a", "search_us": 1e6, "verified_us": 1.3e6},
        {"hash": "dflt", "search_us": None, "verified_us": 1.0e6, "default": True}]}))
    changed, saved = verification_effect(tmp_path)[0]
    assert changed and abs(saved - 1.3) < 1e-9
