"""TVM MetaSchedule objects built the same way in every stage process."""

from __future__ import annotations

import os
import tarfile
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from simpletvm.intrinsics import ensure_intrinsics
from simpletvm.targets import TargetSpec, to_tvm

# XGBoost complains about TVM's "model.bin" file name on every save and load; the format is fine
warnings.filterwarnings("ignore", category=UserWarning,
                        module="tvm.s_tir.meta_schedule.cost_model.xgb_model")

WARMUP_SAMPLES = 100  # TVM's default: predictions are random until this many measurements


def tune_context(workload: Any, target: TargetSpec, task_name: str, seed: int,
                 num_threads: int, evolve: bool = True) -> Any:
    """A TuneContext for one task, as `extracted_tasks_to_tune_contexts` makes it; without
    `evolve`, its evolutionary search samples the design space and evolves nothing (see
    `predicts`)."""
    ensure_intrinsics(target["kind"])
    from tvm.s_tir import meta_schedule as ms

    strategy = "evolutionary" if evolve else ms.search_strategy.EvolutionarySearch(
        genetic_num_iters=0)
    return ms.TuneContext(
        mod=workload, target=to_tvm(target), space_generator="post-order-apply",
        search_strategy=strategy, task_name=task_name, rand_state=seed,
        num_threads=num_threads,
    )


def predicts(model: Any) -> bool:
    """Whether an XGBModel's scores mean anything: before WARMUP_SAMPLES measurements (or a
    first training) it scores every candidate with a uniform random number, and an
    evolutionary search guided by random scores is a random walk from random samples: its
    genetic rounds cost 75% of a search (8.0-8.7 s of a conv's, against 1.9-2.0 s without:
    docs/design.md) and pick no better than the samples they start from."""
    return model.data_size >= model.num_warmup_samples and model.booster is not None


def database(task_dir: Path) -> Any:
    """The task's JSONDatabase (created when missing: TVM does not create the directory)."""
    from tvm.s_tir import meta_schedule as ms

    db_dir = task_dir / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(db_dir), module_equality="structural")


def cost_model(path: Path, num_threads: int) -> Any:
    """The job's XGBModel, loaded from `path` when it exists.

    TVM's `XGBModel.load` fails on a model saved before its first training (no booster in the
    tar); we load the feature data alone in that case.
    """
    from tvm.s_tir.meta_schedule.cost_model import XGBModel
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import FeatureGroup

    model = XGBModel(extractor="per-store-feature", num_warmup_samples=WARMUP_SAMPLES,
                     num_tuning_cores=num_threads, adaptive_training=True)
    if not path.exists():
        return model
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as tar:
        tar.extractall(tmp, filter="data")
        if os.path.exists(os.path.join(tmp, "model.bin")):
            model.load(str(path))
            return model
        data: OrderedDict[str, Any] = OrderedDict()
        for group_hash, features, costs in np.load(os.path.join(tmp, "data.npy"),
                                                   allow_pickle=True):
            data[group_hash] = FeatureGroup(group_hash=group_hash, features=list(features),
                                            costs=costs)
        model.data = data
        model.data_size = sum(len(g.costs) for g in data.values())
    return model
