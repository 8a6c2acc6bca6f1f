"""The zoo's ONNX graphs, built in code (no downloads); `simpletvm.zoo` names them and their inputs.

Every zoo model goes through the same ONNX import path as a user's model. Weights are random
with a fixed seed: tuning cares about shapes, not values. Each builder takes its input shape
first (the defaults are in `simpletvm.zoo.INPUTS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from simpletvm.errors import ModelError

_OPSET = 17


class _Graph:
    """Accumulates ONNX nodes and initializers with generated names."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def weight(self, shape: Sequence[int], scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        std = scale if scale is not None else (2.0 / max(fan_in, 1)) ** 0.5
        arr = (self.rng.standard_normal(shape) * std).astype("float32")
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        w, b = self.weight((cout, cin, k, k)), self.weight((cout,), scale=0.01)
        pad = k // 2
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride],
                    pads=[pad, pad, pad, pad])
        return self.op("Relu", [y]) if relu else y

    def dense(self, x: str, fin: int, fout: int, relu: bool) -> str:
        w, b = self.weight((fout, fin)), self.weight((fout,), scale=0.01)
        y = self.op("Gemm", [x, w, b], transB=1)
        return self.op("Relu", [y]) if relu else y

    def model(self, name: str, x_shape: Sequence[int], out: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _check_shape(name: str, shape: Sequence[int], rank: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != rank or any(s <= 0 for s in shape):
        raise ModelError(f"zoo model {name!r} needs a positive input shape of rank {rank}, "
                         f"got {list(shape)}")
    return shape


def mlp(input_shape: Sequence[int], hidden: int = 128,
        classes: int = 10) -> onnx.ModelProto:
    """Two hidden dense layers with ReLU."""
    batch, features = _check_shape("mlp", input_shape, 2)
    g = _Graph()
    h = g.dense("x", features, hidden, relu=True)
    h = g.dense(h, hidden, hidden, relu=True)
    return g.model("mlp", (batch, features), g.dense(h, hidden, classes, relu=False))


def convnet(input_shape: Sequence[int], width: int = 16,
            classes: int = 10) -> onnx.ModelProto:
    """Two 3x3 convolutions with ReLU, then two dense layers (the probe's small conv net)."""
    n, c, h, w = _check_shape("convnet", input_shape, 4)
    g = _Graph()
    y = g.conv(g.conv("x", c, width, 3), width, width, 3)
    y = g.op("Flatten", [y], axis=1)
    y = g.dense(y, width * h * w, 64, relu=True)
    return g.model("convnet", (n, c, h, w), g.dense(y, 64, classes, relu=False))


def _basic_block(g: _Graph, x: str, cin: int, cout: int, stride: int) -> str:
    y = g.conv(x, cin, cout, 3, stride)
    y = g.conv(y, cout, cout, 3, 1, relu=False)
    skip = x if stride == 1 and cin == cout else g.conv(x, cin, cout, 1, stride, relu=False)
    return g.op("Relu", [g.op("Add", [y, skip])])


def resnet(depths: Sequence[int], input_shape: Sequence[int], width: int,
           classes: int) -> onnx.ModelProto:
    """A ResNet of basic blocks (batch norm folded into the convolutions' biases)."""
    n, c, h, w = _check_shape("resnet", input_shape, 4)
    g = _Graph()
    y = g.conv("x", c, width, 3, 1)
    cin = width
    for stage, depth in enumerate(depths):
        cout = width * 2**stage
        for i in range(depth):
            y = _basic_block(g, y, cin, cout, 2 if i == 0 and stage > 0 else 1)
            cin = cout
    y = g.op("Flatten", [g.op("GlobalAveragePool", [y])], axis=1)
    return g.model("resnet", (n, c, h, w), g.dense(y, cin, classes, relu=False))


def resnet18(input_shape: Sequence[int], width: int = 16,
             classes: int = 10) -> onnx.ModelProto:
    """ResNet-18 layout (4 stages x 2 basic blocks); width=64 at 224x224 is the original."""
    return resnet((2, 2, 2, 2), input_shape, width, classes)


def resnet_tiny(input_shape: Sequence[int], width: int = 8,
                classes: int = 10) -> onnx.ModelProto:
    """Two stages of one residual block each: a residual net small enough for a quick demo."""
    return resnet((1, 1), input_shape, width, classes)


def matmul(input_shape: Sequence[int], out_features: int = 128) -> onnx.ModelProto:
    """One dense layer: a single tuning task, used for quick tests and the stage benchmark."""
    batch, features = _check_shape("matmul", input_shape, 2)
    g = _Graph()
    return g.model("matmul", (batch, features), g.dense("x", features, out_features, relu=False))


def conv2d(input_shape: Sequence[int], out_channels: int = 16) -> onnx.ModelProto:
    """One 3x3 convolution with bias and ReLU: a single tuning task (the conv2d 16->16 of
    docs/design.md section 1)."""
    n, c, h, w = _check_shape("conv2d", input_shape, 4)
    g = _Graph()
    return g.model("conv2d", (n, c, h, w), g.conv("x", c, out_channels, 3))
