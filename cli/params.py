"""click ParamTypes for tunesched's flags: each turns one flag's text into its value or fails
with a one-line message that says what to type."""

from __future__ import annotations

from typing import Any

import click

from simpletvm.cores import parse_ids
from simpletvm.errors import TargetError
from simpletvm.targets import parse_target


class IdList(click.ParamType):
    """"0-3,6" -> [0, 1, 2, 3, 6] (cores or GPUs)."""

    name = "IDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            return parse_ids(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Gpus(IdList):
    """"auto" (None: ask nvidia-smi), "none" ([]) or GPU ids."""

    name = "auto|none|IDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[int] | None:
        if value == "auto" or value is None:
            return None
        if value == "none":
            return []
        return super().convert(value, param, ctx)


class Target(click.ParamType):
    """"cpu", "cuda" or a JSON dict -> a target dict. `resolve`: an llvm target without
    num-cores ("cpu") takes this machine's cores; else it is left for the runner that takes
    the job (simpletvm.targets.on_host)."""

    name = "TARGET"

    def __init__(self, resolve: bool = True) -> None:
        self.resolve = resolve

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            return parse_target(value, check_with_tvm=False, resolve=self.resolve)
        except TargetError as exc:
            self.fail(str(exc), param, ctx)


class InputShape(click.ParamType):
    """"NAME=d0,d1,..." -> (NAME, [d0, d1, ...])."""

    name = "NAME=DIMS"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, list[int]]:
        if isinstance(value, tuple):
            return value
        name, _, dims = value.partition("=")
        try:
            shape = [int(d) for d in dims.split(",")]
        except ValueError:
            self.fail(f"bad input shape {value!r}: use NAME=1,3,224,224", param, ctx)
        if not name:
            self.fail(f"bad input shape {value!r}: name the input, as in x=1,3,224,224",
                      param, ctx)
        return name, shape


class StageSeconds(click.ParamType):
    """"STAGE=SECONDS" -> (STAGE, seconds), for the stages in `stages`."""

    name = "STAGE=SECONDS"

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, float]:
        if isinstance(value, tuple):
            return value
        stage, _, text = value.partition("=")
        if stage not in self.stages:
            self.fail(f"bad stage timeout {value!r}: the stage must be one of "
                      f"{', '.join(self.stages)}", param, ctx)
        try:
            seconds = float(text)
        except ValueError:
            self.fail(f"bad stage timeout {value!r}: use STAGE=SECONDS, e.g. build=600",
                      param, ctx)
        if not 0 < seconds < float("inf"):
            self.fail(f"bad stage timeout {value!r}: SECONDS must be positive", param, ctx)
        return stage, seconds


IDS = IdList()
GPUS = Gpus()
TARGET = Target()  # records made on this machine
JOB_TARGET = Target(resolve=False)  # a job: "cpu" is the cores of the runner that takes it
INPUT_SHAPE = InputShape()
