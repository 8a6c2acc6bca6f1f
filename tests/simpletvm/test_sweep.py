"""Benchmark sweeps: the file format is validated; a one-point sweep runs without a human."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from simpletvm import sweep
from simpletvm.errors import SimpleTVMError

GOOD = """
[sweep]
name = "t"
round_size = 8

[[matrix]]
model = ["zoo:mlp", "zoo:conv2d"]
target = ['{"kind": "llvm", "num-cores": 1}', "cpu"]
trials = [8, 16]
batch = [1, 2]
"""


def test_sweep_file_expands_the_matrix(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    plan = sweep.load(path)
    assert plan.name == "t" and plan.round_size == 8 and plan.way == "stages"
    assert len(plan.points) == 2 * 2 * 2 * 2
    assert plan.points[0] == sweep.SweepPoint("zoo:mlp", '{"kind": "llvm", "num-cores": 1}', 8, 1)


@pytest.mark.parametrize(("text", "needle"), [
    ("[sweep]\nway = 'magic'\n[[matrix]]\nmodel = ['zoo:mlp']\ntrials = [8]", "way 'magic'"),
    ("[[matrix]]\nmodel = ['zoo:mlp']\ntrials = [0]", "trials must be positive"),
    ("[[matrix]]\nmodel = ['zoo:mlp']", "lacks 'trials'"),
    ("[[matrix]]\nmodel = ['zoo:mlp']\ntrials = [8]\ntarget = ['tpu']", "unknown target"),
    ("[sweep]\nname = 'x'", "no [[matrix]]"),
    ("not toml = = =", "cannot read sweep file"),
])
def test_bad_sweep_files_say_what_is_wrong(tmp_path, text, needle) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(SimpleTVMError, match=needle.replace("[", r"\[")):
        sweep.load(path)


@pytest.mark.tvm
def test_one_point_sweep_through_the_cli_writes_csv_json_and_plot(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nround_size = 8\n[[matrix]]\nmodel = ["zoo:matmul"]\n'
                    'target = [\'{"kind": "llvm", "num-cores": 1}\']\ntrials = [8]\nbatch = [2]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(rows) == 1 and rows[0]["model"] == "zoo:matmul" and rows[0]["batch"] == "2"
    assert float(rows[0]["tuned_us"]) > 0 and rows[0]["error"] == ""
    assert json.loads((out / "results.json").read_text())[0]["trials"] == 8
    assert (out / "sweep.png").stat().st_size > 1000
