"""Which GPUs a stage process sees: the runner's ids are nvidia-smi's (a fake nvidia-smi on
PATH stands in for the driver), a stage under a GPU lease sees exactly its GPUs numbered the
same way (CUDA_DEVICE_ORDER=PCI_BUS_ID), a stage without one sees none. The stage process is
the real one: `child_main` in a forked process, as the fork server runs it."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from proto import tunesched_pb2 as pb
from runner.agent import stage_request
from runner.hostinfo import detect, detect_gpus
from simpletvm.executor import StageOutcome, child_main
from simpletvm.targets import preset

FAKE_SMI = """#!/bin/sh
case "$*" in
  *compute_cap*) printf '8.6\\n8.6\\n' ;;
  *index*) printf '0\\n1\\n' ;;
  *name*) printf 'NVIDIA RTX A6000\\nNVIDIA RTX A6000\\n' ;;
  *) exit 1 ;;
esac
"""


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    return smi


def test_the_runner_offers_the_gpus_nvidia_smi_lists(fake_smi: Path) -> None:
    assert detect_gpus() == [0, 1]
    host = detect("gpu-box")
    assert host.gpus == [0, 1] and host.target_kinds == ["llvm", "cuda"]
    assert preset("cuda")["arch"] == "sm_86"


def _stage_env(lease_gpus: list[int], tmp_path: Path) -> dict[str, str]:
    """Run a stage process for a StartStage whose lease holds `lease_gpus`; the CUDA
    variables it ran with (the stage itself fails at once: there is no job)."""
    start = pb.StartStage(lease=pb.Lease(lease_id="l1", epoch=1, cores=[0], gpus=lease_gpus),
                          job_id="j1", stage_id="j1/1", stage="search", round=0)
    request = stage_request(start, str(tmp_path / "no-job"))
    path = tmp_path / f"outcome-{len(lease_gpus)}.json"
    child = multiprocessing.get_context("fork").Process(
        target=child_main, args=(request.to_dict(), str(path)))
    child.start()
    child.join(60)
    outcome = StageOutcome.from_dict(json.loads(path.read_text()))
    assert outcome.status == "error" and "job.json is missing" in outcome.error
    return outcome.cuda_env


def test_a_stage_sees_exactly_its_leased_gpus_in_nvidia_smi_order(
        fake_smi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # what the runner itself may see
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert _stage_env([1], tmp_path) == {"CUDA_VISIBLE_DEVICES": "1",
                                         "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert _stage_env([], tmp_path) == {"CUDA_VISIBLE_DEVICES": "",
                                        "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
