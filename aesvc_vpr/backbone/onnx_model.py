"""What an ONNX file offers (inputs, outputs, operators), and whether it fits our image input.

Every refusal is one BackboneError that names the model's actual inputs and outputs and the
setting to change, so a user with a new export sees at once what the file wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aesvc_vpr.config import OnnxConfig
from aesvc_vpr.errors import BackboneError

# operators of a model that is quantised already (QDQ or QOperator format): run as it is
QUANTISED_OPS = frozenset({
    'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'QLinearConv',
    'QLinearMatMul', 'ConvInteger', 'MatMulInteger', 'QLinearAdd', 'QLinearMul', 'QGemm',
    'QLinearAveragePool', 'QLinearGlobalAveragePool', 'QLinearConcat', 'QAttention'})
INPUT_DTYPES = ('float32', 'float16', 'uint8', 'int8')


@dataclass(frozen=True)
class Port:
    """One graph input or output: name, element type and shape (a str for a named axis)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def describe(self) -> str:
        """Return e.g. ``input float32[1, 3, 224, 224]``."""
        return f"{self.name} {self.dtype}[{', '.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class OnnxModel:
    """The interface and operator set of an ONNX file."""

    path: Path
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    op_types: frozenset[str]

    @property
    def quantised(self) -> bool:
        """Return True if the graph holds quantised operators (it then runs as it is)."""
        return bool(self.op_types & QUANTISED_OPS)

    def describe(self) -> str:
        """Return 'inputs: ...; outputs: ...' for error messages."""
        return (f"inputs: {', '.join(p.describe() for p in self.inputs)}; "
                f"outputs: {', '.join(p.describe() for p in self.outputs)}")


@dataclass(frozen=True)
class InputGeometry:
    """What the backbone feeds: input name, pixel size, element type, batch (0: any)."""

    name: str
    height: int
    width: int
    dtype: np.dtype
    batch: int


def read_model(path: Path) -> OnnxModel:
    """Read an ONNX file's inputs, outputs and operator types (weights are not needed).

    Raises:
        BackboneError: the file is missing or is not an ONNX model.
    """
    import onnx
    if not path.is_file():
        raise BackboneError(f'{path}: no such ONNX file; set backbone.weights to the .onnx file')
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and onnx's own errors alike
        raise BackboneError(f'{path}: not an ONNX model ({err}); set backbone.weights to an '
                            '.onnx file') from err
    graph = proto.graph
    stored = {t.name for t in graph.initializer}
    ops = {node.op_type for node in graph.node}
    for function in proto.functions:
        ops.update(node.op_type for node in function.node)
    return OnnxModel(path, tuple(_port(v) for v in graph.input if v.name not in stored),
                     tuple(_port(v) for v in graph.output), frozenset(ops))


def _port(value) -> Port:  # noqa: ANN001 (an onnx ValueInfoProto)
    from onnx import helper
    tensor = value.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = f'type{tensor.elem_type}'
    dims = tuple(d.dim_value if d.HasField('dim_value') else (d.dim_param or '?')
                 for d in tensor.shape.dim)
    return Port(value.name, dtype, dims)


def input_geometry(model: OnnxModel, cfg: OnnxConfig, fallback_size: int) -> InputGeometry:
    """Check the model takes one image batch as ``cfg`` lays it out, and return its geometry.

    Args:
        model: the file's interface.
        cfg: layout and input size wanted (input_size 0: the model's own).
        fallback_size: square side when the model's height and width are not fixed and
            ``cfg.input_size`` is 0 (backbone.input_size).

    Raises:
        BackboneError: not exactly one input, not rank 4, not 3 channels on the layout's
            channel axis, a fixed size other than the configured one, an element type we do
            not feed, or a fixed batch other than 1.
    """
    where = f'{model.path} ({model.describe()})'
    if len(model.inputs) != 1:
        raise BackboneError(f'{where}: the model has {len(model.inputs)} inputs; an image '
                            'embedder takes one image tensor (re-export it with one input)')
    port = model.inputs[0]
    if len(port.shape) != 4:
        raise BackboneError(f'{where}: input {port.name} has rank {len(port.shape)}; an image '
                            'batch is rank 4 (N, 3, H, W) or (N, H, W, 3)')
    axes = (1, 2, 3) if cfg.layout == 'nchw' else (3, 1, 2)   # (channel, height, width) axes
    channels = port.shape[axes[0]]
    if isinstance(channels, int) and channels != 3:
        other = 'nhwc' if cfg.layout == 'nchw' else 'nchw'
        other_axis = 3 if other == 'nhwc' else 1
        hint = (f'set backbone.onnx.layout {other}' if port.shape[other_axis] == 3
                else 'the model does not take 3-channel images')
        raise BackboneError(f'{where}: input {port.name} has {channels} channels on axis '
                            f'{axes[0]} for backbone.onnx.layout {cfg.layout}; {hint}')
    height, width = port.shape[axes[1]], port.shape[axes[2]]
    fixed = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
    if cfg.input_size:
        if fixed and (height, width) != (cfg.input_size, cfg.input_size):
            raise BackboneError(f'{where}: input {port.name} is fixed at {height}x{width} '
                                f'pixels, but backbone.onnx.input_size is {cfg.input_size}; '
                                'set backbone.onnx.input_size 0 to use the size of the model')
        height = width = cfg.input_size
    elif not fixed:
        height = width = fallback_size
    if port.dtype not in INPUT_DTYPES:
        raise BackboneError(f'{where}: input {port.name} is {port.dtype}; images can be fed as '
                            f'{" / ".join(INPUT_DTYPES)} only (re-export with a float input)')
    batch = port.shape[0] if isinstance(port.shape[0], int) and port.shape[0] > 0 else 0
    if batch > 1:
        raise BackboneError(f'{where}: input {port.name} has a fixed batch of {batch}; '
                            're-export it with batch 1 or a dynamic batch axis')
    return InputGeometry(port.name, int(height), int(width), np.dtype(port.dtype), batch)


def pick_output(model: OnnxModel, name: str) -> Port:
    """Return the output named ``name`` ('' the first one).

    Raises:
        BackboneError: no output of that name (the message lists them).
    """
    if not name:
        return model.outputs[0]
    for port in model.outputs:
        if port.name == name:
            return port
    raise BackboneError(f'{model.path} ({model.describe()}): no output {name!r}; set '
                        'backbone.onnx.output to one of the outputs listed')
