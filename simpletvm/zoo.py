"""Built-in models: their names and inputs as data, and `build` to make one as an ONNX graph.

The table is import-light on purpose: the daemon checks a submission's input shapes against it
without numpy, onnx or building a model. `build` makes the graph (simpletvm.zoo_graphs); every
zoo model then goes through the same ONNX import path as a user's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from simpletvm.errors import ModelError

if TYPE_CHECKING:
    import onnx

# name -> input name -> default shape
INPUTS: dict[str, dict[str, tuple[int, ...]]] = {
    "matmul": {"x": (1, 128)},
    "conv2d": {"x": (1, 16, 16, 16)},
    "mlp": {"x": (1, 64)},
    "convnet": {"x": (1, 3, 16, 16)},
    "resnet_tiny": {"x": (1, 3, 16, 16)},
    "resnet18": {"x": (1, 3, 32, 32)},
}


def _known(name: str) -> dict[str, tuple[int, ...]]:
    inputs = INPUTS.get(name)
    if inputs is None:
        raise ModelError(f"unknown zoo model {name!r}: choose one of {', '.join(INPUTS)}")
    return inputs


def input_ranks(name: str) -> dict[str, int]:
    """Input name -> rank of the zoo model `name`."""
    return {input_name: len(shape) for input_name, shape in _known(name).items()}


def model_bytes(model: str, input_shapes: dict[str, list[int]] | None = None) -> bytes:
    """Serialized ONNX of `model` ("zoo:NAME" or NAME), input "x" from `input_shapes` if
    given."""
    shape = (input_shapes or {}).get("x")
    return build(model.removeprefix("zoo:"), shape).SerializeToString()


def build(name: str, input_shape: Sequence[int] | None = None,
          **options: object) -> onnx.ModelProto:
    """The zoo model `name` as an ONNX ModelProto (input "x" of `input_shape`, default the
    table's)."""
    from simpletvm import zoo_graphs

    default = _known(name)["x"]
    shape = tuple(input_shape) if input_shape is not None else default
    return getattr(zoo_graphs, name)(shape, **options)
