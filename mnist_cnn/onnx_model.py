"""An exported ONNX file read as data: its size and contents checked, every number it stores counted, its logits."""

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from google.protobuf.message import DecodeError

from mnist_cnn.cli import BadInput
from model import INPUT_SHAPE, NUM_CLASSES

MAX_ONNX_BYTES = 4_000_000  # a model under the parameter budget takes about 150 KB
IMAGES_PER_RUN = 500
STANDARD_DOMAINS = ("", "ai.onnx")  # ONNX's own operators; an exported network needs no others
TEXT_ATTRIBUTES = (onnx.AttributeProto.STRINGS,)  # lists of text, which could carry numbers past the count


class OnnxFileError(BadInput):
    """An ONNX file is too large, unreadable, keeps data outside itself, holds what the gate cannot count, or does
    not map images to ten logits.
    """


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """Return the graphs inside a node's attributes (the branches of If, the bodies of Loop and Scan)."""
    found = []
    for attribute in node.attribute:
        found += [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
    return found


def graphs_of(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """Yield the main graph and every subgraph inside a node, of the main graph or of a local function, however deep."""
    in_functions = [graph for function in model.functions for node in function.node for graph in subgraphs(node)]
    pending = [model.graph, *in_functions]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            pending += subgraphs(node)


def nodes_of(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Yield every node of every graph and of every local function."""
    for graph in graphs_of(model):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def tensors_of(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Yield every tensor the file stores: initializers, tensors in nodes' attributes (such as Constant's), and the
    values and indices of sparse ones.
    """
    for graph in graphs_of(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
    for node in nodes_of(model):
        for attribute in node.attribute:
            yield from [attribute.t] if attribute.type == onnx.AttributeProto.TENSOR else attribute.tensors
            sparse = [attribute.sparse_tensor] if attribute.type == onnx.AttributeProto.SPARSE_TENSOR else []
            for item in [*sparse, *attribute.sparse_tensors]:
                yield from (item.values, item.indices)


def attribute_numbers(attribute: onnx.AttributeProto) -> int:
    """Return how many numbers an attribute holds outside tensors: 1 for a float or an int, else its lists' length."""
    if attribute.type in (onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT):
        return 1
    return len(attribute.floats) + len(attribute.ints)


def stored_numbers(model: onnx.ModelProto) -> int:
    """Return every number the file stores, of any type, wherever it sits: each element of every tensor of
    tensors_of (a scalar is one) and each number in a node's attributes (a convolution's strides and pads, a
    Constant's value_floats), in the main graph, every subgraph and every local function. Names, operator types
    and text do not count.
    """
    elements = sum(math.prod(tensor.dims) for tensor in tensors_of(model))
    return elements + sum(attribute_numbers(attribute) for node in nodes_of(model) for attribute in node.attribute)


def read_onnx(path: Path) -> tuple[bytes, onnx.ModelProto]:
    """Return the bytes of the ONNX file at path and the model they hold; raise OnnxFileError when the file is over
    MAX_ONNX_BYTES, not ONNX, or keeps tensor data in other files.
    """
    try:
        size = path.stat().st_size
        if size > MAX_ONNX_BYTES:
            raise OnnxFileError(f"{path} is {size:,} bytes, over the {MAX_ONNX_BYTES:,} an ONNX model may take")
        data = path.read_bytes()
    except OSError as error:
        raise OnnxFileError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        raise OnnxFileError(f"{path} is not an ONNX model") from None
    if not model.graph.node:
        raise OnnxFileError(f"{path} holds no graph")
    check_countable(model, str(path))
    return data, model


def check_countable(model: onnx.ModelProto, name: str) -> None:
    """Raise OnnxFileError, naming name, for what would slip past stored_numbers: tensor data in other files, a tensor
    with a negative dimension, text tensors or lists of text (a Constant's value_string among them), and operators
    outside ONNX's own domains and the model's local functions.
    """
    functions = {function.domain for function in model.functions}
    for tensor in tensors_of(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxFileError(f"{name} keeps tensor data in other files; an exported model holds all of its own")
        if any(dimension < 0 for dimension in tensor.dims):
            raise OnnxFileError(f"{name} holds a tensor with a negative dimension ({list(tensor.dims)})")
        if tensor.data_type == onnx.TensorProto.STRING:
            raise OnnxFileError(f"{name} holds a tensor of text, which could carry numbers the gate cannot count")
    for node in nodes_of(model):
        if node.domain not in STANDARD_DOMAINS and node.domain not in functions:
            raise OnnxFileError(f"{name} uses the operator {node.domain}.{node.op_type}, outside ONNX's own")
        texts = [a.name for a in node.attribute if a.type in TEXT_ATTRIBUTES or a.name == "value_string"]
        if texts:
            raise OnnxFileError(f"{name}: {node.op_type} holds text ({', '.join(texts)}), which the gate cannot count")


def onnx_session(data: bytes, name: str) -> onnxruntime.InferenceSession:
    """Return an onnxruntime session on the CPU for the model in data (named name in errors), which must take one
    batch of images (N, 1, 28, 28) and return one output.
    """
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types, all of them meaning "cannot run this"
        raise OnnxFileError(f"onnxruntime cannot run {name}: {str(error).splitlines()[0]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise OnnxFileError(f"{name} has {len(inputs)} inputs and {len(outputs)} outputs, expected one of each")
    return session


def onnx_logits(session: onnxruntime.InferenceSession, images: np.ndarray, name: str) -> np.ndarray:
    """Return the model's float32 logits (N, 10) for float32 images (N, 1, 28, 28), IMAGES_PER_RUN at a time."""
    input_name = session.get_inputs()[0].name
    logits = []
    for start in range(0, len(images), IMAGES_PER_RUN):
        batch = np.ascontiguousarray(images[start : start + IMAGES_PER_RUN], dtype=np.float32)
        try:
            answer = np.asarray(session.run(None, {input_name: batch})[0])
        except Exception as error:  # as in onnx_session
            raise OnnxFileError(f"onnxruntime failed on {name}: {str(error).splitlines()[0]}") from None
        if not np.issubdtype(answer.dtype, np.floating) or not np.isfinite(answer).all():
            raise OnnxFileError(f"{name} answers logits that are not finite numbers ({answer.dtype})")
        if answer.shape != (len(batch), NUM_CLASSES):
            raise OnnxFileError(
                f"{name} answers {len(batch)} images of shape {INPUT_SHAPE} with shape {answer.shape}, "
                f"expected ({len(batch)}, {NUM_CLASSES})"
            )
        logits.append(answer.astype(np.float32))
    return np.concatenate(logits)
