"""`tunesched demo` end to end (the README's first command, with a small budget): real TVM,
an embedded scheduler and two runners; its dashboard answers while the jobs run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from scheduler.testing import TUNESCHED, wait_for


@pytest.mark.tvm
@pytest.mark.slow
def test_the_demo_tunes_both_models_and_serves_its_dashboard(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.Popen([*TUNESCHED, "demo", "--out", str(out), "--trials", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    lines = []
    try:
        for line in proc.stdout:  # the URL comes before the jobs are submitted
            lines.append(line)
            match = re.search(r"dashboard at (http://\S+)", line)
            if match:
                break
        assert match, "".join(lines)

        def listed() -> list:
            with urllib.request.urlopen(match.group(1) + "api/jobs", timeout=10) as reply:
                jobs = json.loads(reply.read())["jobs"]
            return jobs if len(jobs) == 2 else []

        jobs = wait_for(listed, 60, "the demo's two jobs on its dashboard")
        assert {j["name"] for j in jobs} == {"mlp", "convnet"}
        rest, _ = proc.communicate(timeout=900)
    finally:
        proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    for name in ("mlp", "convnet"):
        report = json.loads((out / "results" / name / "report.json").read_text())
        assert report["tuned"]["median_us"] > 0 and report["untuned"]["median_us"] > 0
        assert f"{name} (zoo:{name}" in rest  # its report was printed
    assert (out / "timeline.png").stat().st_size > 0
