"""Model import and persistence: ONNX bytes or Relax modules in, a Relax IRModule out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from simpletvm.errors import ModelError, last_line

MAX_ONNX_BYTES = 2 * 1024**3 - 1  # protobuf's own limit for one message


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, static shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(data["name"], tuple(int(s) for s in data["shape"]), data["dtype"])


def read_onnx(source: str | Path | bytes) -> onnx.ModelProto:
    """A checked ONNX ModelProto from a file path or bytes; ModelError on anything malformed."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read ONNX model {source}: {exc.strerror}") from exc
    if not data:
        raise ModelError("ONNX model is empty: pass a .onnx file exported by your framework")
    if len(data) > MAX_ONNX_BYTES:
        raise ModelError(f"ONNX model is {len(data)} bytes, over the 2 GiB protobuf limit")
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, ...
        why = last_line(exc) or type(exc).__name__
        raise ModelError(f"not a valid ONNX model ({why}): re-export it with "
                         "torch.onnx.export or check it with onnx.checker") from exc
    if not model.graph.node:
        raise ModelError("ONNX model has no nodes: nothing to tune")
    return model


def import_onnx(model: onnx.ModelProto,
                input_shapes: dict[str, list[int]] | None = None) -> Any:
    """The Relax IRModule of an ONNX model, weights bound as constants."""
    from tvm.relax.frontend.onnx import from_onnx

    _check_input_shapes(model, input_shapes)
    try:
        mod = from_onnx(model, shape_dict=input_shapes, keep_params_in_input=False)
    except Exception as exc:
        why = last_line(exc) or type(exc).__name__
        raise ModelError(f"ONNX import failed ({why}): check the input shapes and "
                         "that every operator is supported by TVM's ONNX frontend") from exc
    specs = input_specs(mod)
    if any(dim < 0 for spec in specs for dim in spec.shape):
        raise ModelError("model has dynamic input dimensions: pass static input shapes, e.g. "
                         'input_shapes={"x": [1, 3, 224, 224]}')
    return mod


def _check_input_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]] | None) -> None:
    if not shapes:
        return
    init_names = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in init_names]
    for name, shape in shapes.items():
        if name not in names:
            raise ModelError(f"input shape given for {name!r}, but the model's inputs are {names}")
        if not shape or any(int(s) <= 0 for s in shape):
            raise ModelError(f"input shape for {name!r} must be positive integers, got {shape}")


def input_specs(mod: Any) -> list[InputSpec]:
    """Name, shape and dtype of each input of the module's `main`."""
    func = mod["main"]
    num_input = int(func.attrs["num_input"]) if func.attrs and "num_input" in func.attrs else None
    params = list(func.params)[:num_input] if num_input is not None else list(func.params)
    specs = []
    for param in params:
        shape = tuple(int(d) if hasattr(d, "value") or isinstance(d, int) else -1
                      for d in param.ty.shape)
        specs.append(InputSpec(param.name, shape, str(param.ty.dtype)))
    return specs


def random_inputs(specs: list[InputSpec], seed: int = 0) -> list[np.ndarray]:
    """Deterministic random arrays matching the input specs."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s.shape).astype(s.dtype) if "float" in s.dtype
            else rng.integers(0, 8, s.shape).astype(s.dtype) for s in specs]


def save_module(mod: Any, path: Path) -> None:
    """Write a Relax IRModule (constants included) as TVM JSON."""
    import tvm

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tvm.ir.save_json(mod))
    tmp.replace(path)
    specs = [s.to_dict() for s in input_specs(mod)]
    (path.parent / "inputs.json").write_text(json.dumps(specs))


def load_module(path: Path) -> Any:
    """A Relax IRModule written by `save_module`."""
    import tvm

    return tvm.ir.load_json(path.read_text())


def load_input_specs(path: Path) -> list[InputSpec]:
    """The input specs written beside a saved module."""
    return [InputSpec.from_dict(d) for d in json.loads((path.parent / "inputs.json").read_text())]


def bind_params(mod: Any, params: dict[str, Any] | None) -> Any:
    """Bind numpy/TVM params of `main` as constants (for modules built with relax.frontend.nn)."""
    if not params:
        return mod
    import tvm
    from tvm import relax

    tensors = {k: v if isinstance(v, tvm.runtime.Tensor) else tvm.runtime.tensor(np.asarray(v))
               for k, v in params.items()}
    return relax.transform.BindParams("main", tensors)(mod)



__all__ = ["InputSpec", "bind_params", "import_onnx", "input_specs", "load_input_specs",
           "load_module", "random_inputs", "read_onnx", "save_module"]
