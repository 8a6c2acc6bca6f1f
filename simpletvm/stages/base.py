"""What every stage receives: the job directory, the round, and the resources it was leased."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simpletvm.jobdir import JobDir


@dataclass
class StageContext:
    """Inputs of one stage run. `cores` are the CPU ids the process is pinned to."""

    job: JobDir
    round: int = 0
    cores: list[int] = field(default_factory=lambda: [0])
    gpus: list[int] = field(default_factory=list)

    @property
    def threads(self) -> int:
        return max(1, len(self.cores))

    @property
    def round_dir(self) -> Path:
        return self.job.round_dir(self.round)
