"""What a job measured and what it kept, read back from its rounds (the paired comparison)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from evaluation.fidelity import kept_kernels, measured_candidates


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
