"""mnist_cnn/onnx_model.py: every number an ONNX file stores is counted wherever it hides; hostile files are refused."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from mnist_cnn import onnx_model
from mnist_cnn.checkpoint import load_checkpoint
from mnist_cnn.onnx_model import OnnxFileError, onnx_logits, onnx_session, read_onnx, stored_numbers
from model import count_parameters

OPSET = [helper.make_opsetid("", 20)]
IMAGES = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 28, 28])
LOGITS = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])


def linear_model(weights: np.ndarray, extra: dict | None = None) -> onnx.ModelProto:
    """Return logits = flatten(images) @ weights as an ONNX model, with extra's pieces added to its graph."""
    extra = extra or {}
    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        *extra.get("nodes", []),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [IMAGES],
        [LOGITS],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "weights"), *extra.get("initializers", [])],
        sparse_initializer=extra.get("sparse", []),
    )
    return helper.make_model(graph, opset_imports=OPSET, functions=extra.get("functions", []))


WEIGHTS = np.arange(784 * 10, dtype=np.float32).reshape(784, 10) / 1e4
BASE_NUMBERS = 784 * 10 + 1  # the weights, and Flatten's axis


def unused_if(initializer_size: int) -> onnx.NodeProto:
    """An If node whose branches each hold an initializer of initializer_size numbers."""
    branch = helper.make_graph(
        [helper.make_node("Identity", ["hidden"], ["out"])],
        "branch",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [initializer_size])],
        initializer=[numpy_helper.from_array(np.ones(initializer_size, np.float32), "hidden")],
    )
    condition = helper.make_node("Constant", [], ["condition"], value_int=1)
    return [condition, helper.make_node("If", ["condition"], ["chosen"], then_branch=branch, else_branch=branch)]


LOCAL_FUNCTION = helper.make_function(
    "local",
    "Hidden",
    [],
    ["out"],
    [helper.make_node("Constant", [], ["out"], value_floats=[1.0, 2.0, 3.0, 4.0])],
    OPSET,
)
# Where a change might hide numbers in a file, with the numbers each place adds.
HIDING_PLACES = {
    "initializer": ({"initializers": [numpy_helper.from_array(np.ones((3, 4), np.float32), "extra")]}, 12),
    "int8 initializer": ({"initializers": [numpy_helper.from_array(np.ones(40, np.int8), "packed")]}, 40),
    "constant tensor": (
        {"nodes": [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(7)))]},
        7,
    ),
    "constant list": ({"nodes": [helper.make_node("Constant", [], ["c"], value_floats=[0.5] * 9)]}, 9),
    "sparse initializer": (
        {
            "sparse": [
                helper.make_sparse_tensor(
                    numpy_helper.from_array(np.ones(5, np.float32), "s"), numpy_helper.from_array(np.arange(5)), [100]
                )
            ]
        },
        10,
    ),
    "subgraph": ({"nodes": unused_if(6)}, 1 + 2 * 6),
    "local function": ({"functions": [LOCAL_FUNCTION]}, 4),
}


def test_a_plain_model_stores_its_weights_and_settings() -> None:
    assert stored_numbers(linear_model(WEIGHTS)) == BASE_NUMBERS


@pytest.mark.parametrize("place", HIDING_PLACES)
def test_numbers_count_wherever_they_hide(place: str) -> None:
    extra, numbers = HIDING_PLACES[place]
    assert stored_numbers(linear_model(WEIGHTS, extra)) == BASE_NUMBERS + numbers


def test_an_exported_model_stores_at_least_its_parameters_and_buffers(shipped_run: Path) -> None:
    _, model = read_onnx(next(shipped_run.glob("*.onnx")))
    counted = stored_numbers(model)
    network, _ = load_checkpoint(next(shipped_run.glob("*.pt")), torch.device("cpu"))
    buffers = sum(buffer.numel() for name, buffer in network.named_buffers() if "num_batches" not in name)
    assert count_parameters(network) + buffers <= counted < count_parameters(network) + buffers + 200


def save(tmp_path: Path, model: onnx.ModelProto) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_logits_are_the_models_own(tmp_path: Path) -> None:
    data, _ = read_onnx(save(tmp_path, linear_model(WEIGHTS)))
    images = np.random.default_rng(0).random((1001, 1, 28, 28), dtype=np.float32)
    logits = onnx_logits(onnx_session(data, "model.onnx"), images, "model.onnx")
    np.testing.assert_allclose(logits, images.reshape(1001, 784) @ WEIGHTS, rtol=1e-5)


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, linear_model(WEIGHTS))
    monkeypatch.setattr(onnx_model, "MAX_ONNX_BYTES", path.stat().st_size - 1)
    with pytest.raises(OnnxFileError, match="over the"):
        read_onnx(path)
    monkeypatch.setattr(onnx_model, "MAX_ONNX_BYTES", path.stat().st_size)
    read_onnx(path)


def test_data_kept_in_another_file_is_refused(tmp_path: Path) -> None:
    model = linear_model(WEIGHTS)
    onnx.save_model(
        model, tmp_path / "model.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    with pytest.raises(OnnxFileError, match="keeps tensor data in other files"):
        read_onnx(tmp_path / "model.onnx")


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x07" * 100])
def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.onnx").write_bytes(content)
    with pytest.raises(OnnxFileError):
        read_onnx(tmp_path / "bad.onnx")


def test_a_model_with_the_wrong_output_is_refused(tmp_path: Path) -> None:
    data, _ = read_onnx(save(tmp_path, linear_model(np.ones((784, 9), np.float32))))
    with pytest.raises(OnnxFileError, match="expected \\(3, 10\\)"):
        onnx_logits(onnx_session(data, "nine.onnx"), np.zeros((3, 1, 28, 28), np.float32), "nine.onnx")


def test_a_model_onnxruntime_cannot_run_is_refused(tmp_path: Path) -> None:
    model = linear_model(WEIGHTS)
    model.graph.node[1].op_type = "NoSuchOperator"
    with pytest.raises(OnnxFileError, match="onnxruntime cannot run"):
        onnx_session(model.SerializeToString(), "odd.onnx")


def test_a_subgraph_inside_a_local_function_counts() -> None:
    hidden_if = unused_if(50)
    function = helper.make_function("local", "Hides", [], ["chosen"], hidden_if, OPSET)
    assert stored_numbers(linear_model(WEIGHTS, {"functions": [function]})) == BASE_NUMBERS + 1 + 2 * 50


# What could carry numbers past the count, and the words that refuse it.
UNCOUNTABLE = {
    "a text tensor": (
        {"initializers": [helper.make_tensor("text", TensorProto.STRING, [2], [b"0.5 0.25", b"0.125"])]},
        "a tensor of text",
    ),
    "a Constant's text": ({"nodes": [helper.make_node("Constant", [], ["t"], value_string="0.5 0.25")]}, "holds text"),
    "a list of text": (
        {"nodes": [helper.make_node("Constant", [], ["t"], value_strings=["0.5", "0.25"])]},
        "holds text (value_strings)",
    ),
    "another domain's operator": (
        {"nodes": [helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_int64s=[1])]},
        "uses the operator ai.onnx.ml.LabelEncoder",
    ),
    "a negative dimension": (
        {"initializers": [TensorProto(name="odd", data_type=TensorProto.FLOAT, dims=[-5000])]},
        "a tensor with a negative dimension",
    ),
}


@pytest.mark.parametrize("case", UNCOUNTABLE)
def test_what_could_carry_uncounted_numbers_is_refused(case: str, tmp_path: Path) -> None:
    extra, words = UNCOUNTABLE[case]
    with pytest.raises(OnnxFileError, match=re.escape(words)):
        read_onnx(save(tmp_path, linear_model(WEIGHTS, extra)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_logits_that_are_not_finite_are_refused(bad: float, tmp_path: Path) -> None:
    weights = WEIGHTS.copy()
    weights[0, 3] = bad
    data, _ = read_onnx(save(tmp_path, linear_model(weights)))
    with pytest.raises(OnnxFileError, match="not finite numbers"):
        onnx_logits(onnx_session(data, "odd.onnx"), np.ones((2, 1, 28, 28), np.float32), "odd.onnx")
