"""The simpletvm exception tree.

    SimpleTVMError            base of everything simpletvm raises on purpose
    ├── ModelError            the model cannot be read, validated or imported (bad ONNX, bad shapes)
    ├── SpecError             a job spec breaks a rule (simpletvm.spec); also a ValueError
    │   └── TargetError       the target is unknown or malformed
    ├── JobDirError           a job directory is missing a manifest or holds a corrupt one
    └── StageError            a tuning stage failed; carries its name and the child's traceback

Errors raised inside TVM are caught at the stage boundary and re-raised as one of these with
`raise ... from exc`, so callers never need to know TVM's exception types.
"""

from __future__ import annotations


class SimpleTVMError(Exception):
    """Base class of every error simpletvm raises on purpose."""


class ModelError(SimpleTVMError):
    """The model cannot be read, validated or imported."""


class SpecError(SimpleTVMError, ValueError):
    """A job spec breaks one of its rules; the message says which and what to do."""


class TargetError(SpecError):
    """The target is unknown or malformed."""


class JobDirError(SimpleTVMError):
    """A job directory lacks a manifest or holds a corrupt one."""


class StageError(SimpleTVMError):
    """A tuning stage failed.

    `stage` names it, `traceback` holds the text of the failure in the process that ran it.
    """

    def __init__(self, stage: str, message: str, traceback: str = "") -> None:
        super().__init__(f"stage {stage} failed: {message}")
        self.stage = stage
        self.message = message
        self.traceback = traceback


def last_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's message (TVM puts the gist there), or ""."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
