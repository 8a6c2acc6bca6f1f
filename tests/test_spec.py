"""JobSpec: one type from the CLI to job.json. Its rules, its JSON and wire forms, its flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.jobs import submit
from cli.main import cli
from proto import jobspec
from proto import tunesched_pb2 as pb
from scheduler.service.config import DaemonConfig
from scheduler.service.server import Service
from simpletvm.jobdir import JobDir
from simpletvm.spec import JobSpec, SpecError

FULL = JobSpec(model="zoo:mlp", target={"kind": "llvm", "num-cores": 2}, trials=64,
               batch_size=16, name="full", seed=3, priority=-7, user="alice",
               latency_goal_us=120.5, input_shapes={"x": [4, 64]}, replay="/runs/earlier",
               verify_top=0, verify_passes=3, min_task_share=0.05, sampling="chameleon")


def test_a_spec_is_frozen_and_names_itself_after_its_model() -> None:
    spec = JobSpec(model="zoo:conv2d", trials=8)
    assert spec.name == "conv2d" and spec.target_kind == "llvm"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.trials = 9  # type: ignore[misc]
    assert spec.with_(trials=9).trials == 9 and spec.trials == 8


@pytest.mark.parametrize(("fields", "needle"), [
    ({"trials": -1}, "trials must be between 0"),
    ({"trials": True}, "trials must be an integer"),
    ({"batch_size": 0}, "batch size must be between 1"),
    ({"priority": 1001}, "priority must be between -1000 and 1000"),
    ({"latency_goal_us": 0.0}, "latency goal must be positive"),
    ({"target": {"kind": "tpu"}}, "unknown target kind 'tpu'"),
    *[({"target": {"kind": kind}}, f"target kind '{kind}' is not supported")
      for kind in ("rocm", "metal", "vulkan", "opencl")],  # once scheduled as llvm
    ({"target": {"kind": "llvm", "num-cores": 0}}, "num-cores must be a positive integer"),
    ({"model": "zoo:vgg"}, "unknown zoo model 'vgg'"),
    ({"model": "zoo:mlp", "input_shapes": {"x": [1, 2, 3]}}, "has rank 3"),
    ({"input_shapes": {"x": [0, 3]}}, "must be positive integers"),
    ({"verify_top": 1}, "verify top must be 0"),
    ({"min_task_share": 1.0}, "min task share must be at least 0 and under 1"),
    ({"replay": "relative"}, "absolute path"),
    ({"cpu_profile_exclusivity": "rack"}, "cpu profile exclusivity"),
    ({"sampling": "greedy"}, "sampling must be one of all, chameleon, got 'greedy'"),
])
def test_every_rule_is_one_line_that_says_what_to_do(fields, needle) -> None:
    with pytest.raises(SpecError) as err:
        JobSpec(**fields)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_json_and_wire_round_trips_keep_every_field(tmp_path: Path) -> None:
    assert JobSpec.from_dict(json.loads(json.dumps(FULL.to_dict()))) == FULL
    job = JobDir(tmp_path)
    job.write_spec(FULL)
    assert job.spec() == FULL  # job.json
    wire = jobspec.to_pb(FULL, "req-1")
    assert wire.request_id == "req-1"
    assert jobspec.from_pb(wire) == FULL.with_(target=FULL.target)  # no local-only fields set
    # a field of the spec that the wire does not carry stays local (set by the scheduler)
    assert jobspec.from_pb(jobspec.to_pb(FULL.with_(job_id="job-1"))).job_id == ""


def test_unset_wire_fields_take_the_spec_defaults() -> None:
    spec = jobspec.from_pb(pb.JobSpec(model="zoo:mlp", trials=8, target_json="cpu"))
    defaults = JobSpec()
    assert (spec.batch_size, spec.verify_top, spec.verify_passes, spec.latency_goal_us,
            spec.min_task_share, spec.sampling) == (defaults.batch_size, defaults.verify_top,
                                                    defaults.verify_passes, None, 0.0, "all")
    assert spec.target == {"kind": "llvm"}  # "cpu": resolved by the runner that takes it
    off = jobspec.from_pb(pb.JobSpec(model="zoo:mlp", trials=8, verify_top=0))
    assert off.verify_top == 0  # an optional field set to 0 is not "unset"


def test_every_flagged_field_is_a_submit_option() -> None:
    flagged = {f.name for f in dataclasses.fields(JobSpec) if "flag" in f.metadata}
    options = {p.name for p in submit.params}
    assert {"min_task_share", "verify_top", "seed", "latency_goal_us",
            "sampling"} <= flagged <= options


def test_a_field_added_to_the_spec_reaches_the_daemon_from_the_cli(tmp_path: Path) -> None:
    """min_task_share was added to the spec and the .proto only: the CLI option, the wire and
    the daemon's record follow from them."""
    service = Service(DaemonConfig(tmp_path / "s.db"), "127.0.0.1:0").start()
    try:
        result = CliRunner().invoke(cli, [
            "submit", "zoo:mlp", "--scheduler", service.address, "--trials", "8",
            "--target", '{"kind": "llvm", "num-cores": 2}', "--min-task-share", "0.25",
            "--seed", "11", "--sampling", "chameleon"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        job_id = result.output.strip().splitlines()[-1]
        spec = service.daemon.get(job_id).spec
        assert (spec.min_task_share, spec.seed, spec.trials, spec.sampling) == (
            0.25, 11, 8, "chameleon")
        bad = CliRunner().invoke(cli, ["submit", "zoo:mlp", "--scheduler", service.address,
                                        "--trials", "8", "--min-task-share", "2"])
        assert bad.exit_code == 1
        assert bad.output.strip() == ("error: min task share must be at least 0 and under 1, "
                                      "got 2.0")
        unknown = CliRunner().invoke(cli, ["submit", "zoo:mlp", "--scheduler", service.address,
                                            "--trials", "8", "--sampling", "greedy"])
        assert unknown.exit_code == 2 and "'greedy' is not one of 'all', 'chameleon'" in \
            unknown.output
    finally:
        service.stop()
