"""ONNX import: a model built here with onnx.helper imports, compiles, matches the reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from simpletvm import SimpleTVM, models, zoo
from simpletvm.errors import ModelError

pytestmark = pytest.mark.tvm


def _gemm_relu_model(batch: int | str = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((8, 16)).astype("float32"), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype("float32"), "b")
    nodes = [helper.make_node("Gemm", ["inp", "w", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["out"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 8])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_onnx_built_in_test_imports_compiles_and_matches_reference() -> None:
    model = _gemm_relu_model()
    tvm_model = SimpleTVM.from_onnx(model.SerializeToString()).target("cpu").compile()
    assert [s.shape for s in models.input_specs(tvm_model.module)] == [(2, 16)]
    import tvm
    from tvm import relax

    x = models.random_inputs(models.input_specs(tvm_model.module))[0]
    vm = relax.VirtualMachine(tvm_model.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ReferenceEvaluator(model).run(None, {"inp": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dynamic_batch_needs_and_accepts_input_shapes(tmp_path) -> None:
    path = tmp_path / "dyn.onnx"
    onnx.save(_gemm_relu_model("N"), path)
    with pytest.raises(ModelError, match="dynamic input"):
        SimpleTVM.from_onnx(path)
    with pytest.raises(ModelError, match="model's inputs are"):
        SimpleTVM.from_onnx(path, input_shapes={"x": [4, 16]})
    shaped = SimpleTVM.from_onnx(path, input_shapes={"inp": [4, 16]})
    assert [s.shape for s in models.input_specs(shaped.module)] == [(4, 16)]


@pytest.mark.parametrize("data", [b"", b"\x00garbage\xff" * 10,
                                  zoo.build("mlp").SerializeToString()[:300]])
def test_malformed_or_truncated_onnx_is_a_model_error(data: bytes) -> None:
    with pytest.raises(ModelError) as err:
        models.read_onnx(data)
    assert "\n" not in str(err.value)


def test_zoo_models_compute_what_onnx_reference_computes() -> None:
    model = zoo.build("resnet_tiny")
    net = SimpleTVM.from_zoo("resnet_tiny").target({"kind": "llvm", "num-cores": 1}).compile()
    import tvm
    from tvm import relax

    x = models.random_inputs(models.input_specs(net.module))[0]
    got = relax.VirtualMachine(net.executable, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_extract_reports_weights_and_flops() -> None:
    net = SimpleTVM.from_zoo("resnet18", (1, 3, 32, 32)).target("cpu").extract()
    tasks = net.tasks
    assert len(tasks) >= 10
    assert any(t.weight > 1 for t in tasks)  # repeated residual blocks share a task
    conv = [t for t in tasks if "conv2d" in t.name]
    assert conv and all(t.flops > 0 for t in conv)
