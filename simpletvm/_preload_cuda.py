"""Warm fork server preload for hosts that tune GPU targets (adds the CUDA intrinsics, 10-17 s:
docs/design.md section 3)."""

import simpletvm._preload  # noqa: F401
from simpletvm.intrinsics import ensure_intrinsics

ensure_intrinsics("cuda")
