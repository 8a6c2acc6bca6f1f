"""bench_ways' --jobs: zoo models with shapes, and ONNX files with input shapes by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from evaluation.ways import parse_jobs

from simpletvm import zoo

TARGET = {"kind": "llvm", "num-cores": 2}


def test_zoo_models_and_onnx_files_with_named_input_shapes(tmp_path: Path) -> None:
    onnx = tmp_path / "odd.onnx"
    onnx.write_bytes(zoo.model_bytes("zoo:matmul", {"x": [48, 96]}))
    jobs = parse_jobs(f"matmul:64x256,{onnx}:x=48,96,conv2d", 32, 8)
    assert [(j.name, j.trials, j.batch) for j in jobs] == \
        [("matmul", 32, 8), ("odd", 32, 8), ("conv2d", 32, 8)]
    zoo_job, file_job, plain = jobs
    assert zoo_job.spec(TARGET).model == "zoo:matmul"
    assert zoo_job.input_shapes == {"x": [64, 256]} and zoo_job.onnx_bytes() is None
    assert file_job.spec(TARGET).model == "odd.onnx"
    assert file_job.spec(TARGET).input_shapes == {"x": [48, 96]}
    assert file_job.onnx_bytes() == onnx.read_bytes()
    assert plain.input_shapes is None
    root = file_job.create(tmp_path / "jobs", TARGET)  # a job directory holding the file
    assert (root / "model" / "model.onnx").read_bytes() == onnx.read_bytes()


@pytest.mark.parametrize(("text", "why"), [
    ("nowhere.onnx:x=1,2", "no ONNX file"), ("matmul:64xq", "bad shape"),
    ("{onnx}:x=1.5,2", "bad input shape"), ("{onnx}:=1,2", "needs the input's name")])
def test_bad_jobs_say_what_is_wrong(tmp_path: Path, text: str, why: str) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(zoo.model_bytes("zoo:matmul", None))
    with pytest.raises(SystemExit, match=why):
        parse_jobs(text.format(onnx=onnx), 8, 8)
