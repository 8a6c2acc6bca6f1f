"""The command line's pieces without a daemon: flag types, one-line errors, text formatting."""

from __future__ import annotations

from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from cli.format import job_lines, job_table_rows, record_lines, report_lines, runner_lines, us
from cli.main import cli
from cli.params import GPUS, IDS, INPUT_SHAPE, TARGET, StageSeconds


@pytest.mark.parametrize(("param", "text", "value"), [
    (IDS, "0-3,6", [0, 1, 2, 3, 6]),
    (GPUS, "auto", None),
    (GPUS, "none", []),
    (GPUS, "1,0", [0, 1]),
    (TARGET, '{"kind": "llvm", "num-cores": 3}', {"kind": "llvm", "num-cores": 3}),
    (INPUT_SHAPE, "x=1,3,224,224", ("x", [1, 3, 224, 224])),
    (StageSeconds(["build", "search"]), "build=600", ("build", 600.0)),
])
def test_flag_types_parse_what_the_help_says(param, text, value) -> None:
    assert param.convert(text, None, None) == value


@pytest.mark.parametrize(("param", "text", "needle"), [
    (IDS, "3-1", "use forms like 0-3"),
    (TARGET, "tpu", "unknown target 'tpu'"),
    (TARGET, '{"kind": "llvm", ', "not valid JSON"),
    (INPUT_SHAPE, "x=1,a", "use NAME=1,3,224,224"),
    (INPUT_SHAPE, "=1,2", "name the input"),
    (StageSeconds(["build"]), "search=5", "must be one of build"),
    (StageSeconds(["build"]), "build=soon", "use STAGE=SECONDS"),
    (StageSeconds(["build"]), "build=-1", "must be positive"),
])
def test_bad_flags_fail_with_what_to_type(param, text, needle) -> None:
    with pytest.raises(click.BadParameter, match=None) as err:
        param.convert(text, None, None)
    assert needle in str(err.value.message)


@pytest.mark.parametrize("args", [
    ["submit", "zoo:mlp"],  # --trials missing
    ["submit", "zoo:mlp", "--trials", "8", "--target", "tpu"],
    ["runner", "--work-dir", "w", "--cores", "x"],
    ["scheduler", "--policy", "fastest"],
    ["no-such-command"],
])
def test_usage_errors_are_one_line_and_exit_2(args) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_our_errors_are_one_line_and_exit_1(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["submit", str(tmp_path / "missing.onnx"), "--trials", "8"])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot read model") and result.output.count("\n") == 1


def test_us_picks_a_readable_unit() -> None:
    assert [us(None), us(12.34), us(1234.0), us(2.5e6)] == ["-", "12.3 us", "1.23 ms", "2.50 s"]


def test_report_and_table_lines() -> None:
    report = {"name": "mlp", "model": "zoo:mlp", "target": {"kind": "llvm"}, "trials": 64,
              "trial_budget": 64, "rounds": 2, "speedup": 3.0,
              "untuned": {"median_us": 300.0}, "tuned": {"median_us": 100.0, "p90_us": 110.0,
                                                         "cv": 0.02},
              "tasks": [{"name": "dense", "weight": 2, "trials": 56, "best_us": 50.0},
                        {"name": "add", "weight": 1, "trials": 8, "best_us": 9.0,
                         "verified_us": 7.0, "kept_default": True}]}
    lines = report_lines(report)
    assert lines[0] == "mlp (zoo:mlp, llvm): 64/64 trials in 2 rounds"
    assert "untuned 300.0 us -> tuned 100.0 us (3.0x faster" in lines[1]
    assert lines[2].split() == ["dense", "x2", "56", "trials", "best", "50.0", "us"]
    assert lines[3].split()[:7] == ["add", "x1", "8", "trials", "best", "7.0", "us"]
    assert lines[3].endswith("(untuned schedule kept: faster)")
    job = SimpleNamespace(job_id="job-1", name="mlp", state="running", stage="search",
                          trials_done=32, trial_budget=64, best_latency_us=0.0, model="zoo:mlp",
                          target_json="{}", user="alice", priority=0, round=1, host_id="box",
                          tuned_latency_us=0.0, untuned_latency_us=0.0, error="",
                          reused_records=0, reused_tasks=0, known_trials=0, tasks=1, waiting="")
    header, row = job_table_rows([job])
    assert header.split() == ["job", "name", "state", "stage", "trials", "best"]
    assert row.split() == ["job-1", "mlp", "running", "search", "32/64", "-"]
    assert "progress  32/64 trials, round 1, stage search on box" in job_lines(job)
    assert "target    {}" in job_lines(job)
    job.target_json = '{"kind": "llvm"}'
    assert 'target    {"kind": "llvm"}  (every core of the runner that takes it)' in job_lines(job)
    job.target_json = "{}"
    assert not any(line.startswith("reused") for line in job_lines(job))
    job.reused_records, job.reused_tasks, job.known_trials, job.tasks = 48, 2, 24, 3
    assert "reused    48 records for 2/3 tasks; new trials 8" in job_lines(job)
    runner = SimpleNamespace(runner_id="r1", host_id="box", cores=[0, 1, 2], gpus=[],
                             connected=True, foreign_load=0.25, leases=["lease-3"])
    assert runner_lines([runner])[1].split() == ["r1", "box", "0-2", "-", "yes", "0.25",
                                                 "lease-3"]


def test_record_stats_lines() -> None:
    key = SimpleNamespace(scope="", target_key='{"kind":"llvm"}@Some CPU', workloads=3,
                          records=40, imported=5, trials=192)
    header, row = record_lines([key])
    assert header.split() == ["workloads", "records", "imported", "trials", "target", "key"]
    assert row.split() == ["3", "40", "5", "192", '{"kind":"llvm"}@Some', "CPU"]
