"""Imported once by the warm fork server, so stage processes forked from it start ready."""

import tvm
import tvm.s_tir.analysis  # noqa: F401
import xgboost  # noqa: F401
from tvm import relax  # noqa: F401
from tvm.relax.frontend import onnx as _onnx  # noqa: F401
from tvm.s_tir import meta_schedule  # noqa: F401
from tvm.s_tir.meta_schedule.cost_model import xgb_model  # noqa: F401

import simpletvm.stages.build
import simpletvm.stages.compile
import simpletvm.stages.extract
import simpletvm.stages.learn
import simpletvm.stages.profile
import simpletvm.stages.search  # noqa: F401
from simpletvm.intrinsics import ensure_intrinsics

ensure_intrinsics("llvm")
