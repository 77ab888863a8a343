"""Read a ``.tflite`` flatbuffer into a plain graph description (no TensorFlow).

:func:`read_tflite` parses the file with the PyPI ``tflite`` package (the generated flatbuffer
bindings of TensorFlow Lite's schema) and returns a :class:`TFLiteGraphSpec`: a JSON-able
description of the float graph (tensors, operators with their options, inputs and outputs)
plus the constant tensors as numpy arrays. Constant folding happens here: ``DEQUANTIZE`` of
float16 weights and ``DENSIFY`` of sparse weights are applied once, so the graph that
:class:`hmrkit.blazepose.graph.TFLiteGraph` runs only holds float compute ops.

Only ``tflite`` is needed to read a file; running the result needs torch only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "SUPPORTED_OPS",
    "TFLiteFormatError",
    "TFLiteGraphSpec",
    "UnsupportedOpError",
    "densify",
    "read_tflite",
]

SUPPORTED_OPS = (
    "ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "LOGISTIC",
    "MAX_POOL_2D", "PAD", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
)
"""Compute ops :class:`~hmrkit.blazepose.graph.TFLiteGraph` runs (plus the constant-folded
``DEQUANTIZE`` of float16 tensors and ``DENSIFY`` of sparse tensors)."""

_FOLDED_OPS = ("DEQUANTIZE", "DENSIFY")

# TensorType enum of the TFLite schema (schema.fbs).
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_TYPE_NAMES = {0: "FLOAT32", 1: "FLOAT16", 2: "INT32", 3: "UINT8", 4: "INT64", 9: "INT8"}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_PADDINGS = {0: "SAME", 1: "VALID"}


class TFLiteFormatError(ValueError):
    """A ``.tflite`` file that cannot be read or uses a feature hmrkit does not convert."""


class UnsupportedOpError(TFLiteFormatError):
    """A ``.tflite`` operator that hmrkit's converter does not implement."""


@dataclass
class TFLiteGraphSpec:
    """A float TFLite graph as plain data.

    ``tensors``: one ``{"name", "shape"}`` per tensor (shapes as in TFLite, NHWC, batch 1);
    ``ops``: one ``{"type", "inputs", "outputs", "options"}`` per compute operator, in
    execution order, ``inputs``/``outputs`` being tensor indices (-1: optional input absent);
    ``inputs``/``outputs``: the graph's tensor indices; ``constants``: tensor index -> array
    (float16 weights stay float16: the values are exact); ``source``: file name and sha256.
    """

    tensors: list[dict]
    ops: list[dict]
    inputs: list[int]
    outputs: list[int]
    constants: dict[int, np.ndarray] = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Everything but the constants, as JSON-able data."""
        return {"tensors": self.tensors, "ops": self.ops, "inputs": self.inputs,
                "outputs": self.outputs, "source": self.source,
                "constants": sorted(int(k) for k in self.constants)}


def _import_tflite():
    try:
        import tflite  # noqa: F401
        from tflite.BuiltinOperator import BuiltinOperator
        from tflite.BuiltinOptions import BuiltinOptions
    except ImportError as exc:  # pragma: no cover - tflite is a core dependency
        raise ImportError(
            "reading .tflite files needs the 'tflite' package: pip install tflite==2.18.0"
        ) from exc
    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    option_names = {v: k for k, v in vars(BuiltinOptions).items() if not k.startswith("_")}
    return tflite, op_names, option_names


def densify(dense_shape, traversal_order, formats, dense_sizes, segments, indices,
            values) -> np.ndarray:
    """Expand a TFLite sparse tensor (``SparsityParameters`` without block map) to dense.

    Dimension ``k`` of the traversal (``traversal_order[k]`` of the dense tensor) is either
    ``"DENSE"`` (``dense_sizes[k]`` entries) or ``"SPARSE_CSR"`` (for parent position ``p``
    the children are ``indices[k][segments[k][p]:segments[k][p + 1]]``). ``values`` are the
    stored non-zeros in traversal order. Returns the dense array of ``dense_shape``.
    """
    rank = len(dense_shape)
    if sorted(traversal_order) != list(range(rank)) or len(formats) != rank:
        raise TFLiteFormatError(
            f"sparse tensor: traversal order {list(traversal_order)} for a rank-{rank} tensor "
            "(block-sparse tensors are not supported)"
        )
    # coords[k]: the coordinate along traversal dimension k of every position at level k.
    positions = np.zeros(1, dtype=np.int64)  # position index at the current level
    coords: list[np.ndarray] = []
    for k in range(rank):
        if formats[k] == "DENSE":
            n = int(dense_sizes[k])
            children = np.arange(n)
            parent = np.repeat(np.arange(len(positions)), n)
            new_positions = positions[parent] * n + np.tile(children, len(positions))
            coord = np.tile(children, len(positions))
        elif formats[k] == "SPARSE_CSR":
            seg = np.asarray(segments[k], dtype=np.int64)
            idx = np.asarray(indices[k], dtype=np.int64)
            counts = seg[positions + 1] - seg[positions]
            parent = np.repeat(np.arange(len(positions)), counts)
            starts = np.repeat(seg[positions], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            new_positions = starts + offsets
            coord = idx[new_positions]
        else:
            raise TFLiteFormatError(f"sparse tensor: unknown dimension format {formats[k]!r}")
        coords = [c[parent] for c in coords] + [coord]
        positions = new_positions
    values = np.asarray(values).reshape(-1)
    if len(values) != len(positions):
        raise TFLiteFormatError(
            f"sparse tensor: {len(values)} stored values for {len(positions)} positions"
        )
    dense = np.zeros(dense_shape, dtype=values.dtype)
    full_index = [None] * rank
    for k in range(rank):
        full_index[traversal_order[k]] = coords[k]
    dense[tuple(full_index)] = values[positions] if rank else values
    return dense


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.tflite, self.op_names, self.option_names = _import_tflite()
        self.data = path.read_bytes()
        if len(self.data) < 8 or self.data[4:8] != b"TFL3":
            raise TFLiteFormatError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
        try:
            self.model = self.tflite.Model.GetRootAs(self.data, 0)
            self.graph = self.model.Subgraphs(0)
            self.codes = [self._opcode(self.model.OperatorCodes(i))
                          for i in range(self.model.OperatorCodesLength())]
        except Exception as exc:
            raise TFLiteFormatError(f"{path}: cannot parse the flatbuffer ({exc})") from exc
        if self.model.SubgraphsLength() != 1:
            raise TFLiteFormatError(
                f"{path}: {self.model.SubgraphsLength()} subgraphs, hmrkit converts one"
            )

    def _opcode(self, code) -> str:
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if number == 32:  # CUSTOM
            return f"CUSTOM:{code.CustomCode().decode()}"
        return self.op_names.get(number, f"BUILTIN_{number}")

    def tensor(self, index: int):
        return self.graph.Tensors(index)

    def shape(self, index: int) -> list[int]:
        t = self.tensor(index)
        return [int(s) for s in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def raw_buffer(self, index: int) -> np.ndarray | None:
        t = self.tensor(index)
        buf = self.model.Buffers(t.Buffer())
        if buf is None:
            return None
        if buf.Offset() > 1:  # data stored after the flatbuffer (models over 2 GB)
            return np.frombuffer(self.data, np.uint8, buf.Size(), buf.Offset())
        if buf.DataLength() == 0:
            return None
        return buf.DataAsNumpy()

    def constant(self, index: int) -> np.ndarray | None:
        raw = self.raw_buffer(index)
        if raw is None:
            return None
        t = self.tensor(index)
        ttype = t.Type()
        if ttype not in _NUMPY_TYPES:
            raise TFLiteFormatError(
                f"{self.path}: tensor {index} ({t.Name().decode()}) has unsupported type {ttype}"
            )
        values = np.frombuffer(raw.tobytes(), dtype=_NUMPY_TYPES[ttype])
        sparsity = t.Sparsity()
        if sparsity is not None:
            return values  # the stored non-zeros; DENSIFY expands them
        return values.reshape(self.shape(index))

    def options(self, op, op_type: str) -> dict:
        kind = op.BuiltinOptionsType()
        if kind == 0:
            return {}
        cls = getattr(self.tflite, self.option_names[kind])
        table = op.BuiltinOptions()
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        out = {}
        for name in dir(opts):
            if not name[:1].isupper() or name in ("Init",) or "BufferHasIdentifier" in name:
                continue
            if name.startswith("GetRootAs") or name.endswith(("Length", "IsNone", "AsNumpy")):
                continue
            value = getattr(opts, name)
            try:
                value = value()
            except TypeError:
                continue  # vector accessors need an index; read below where needed
            if isinstance(value, (bool, int, float, np.integer, np.floating)):
                out[name] = value.item() if isinstance(value, np.generic) else value
        if "FusedActivationFunction" in out:
            act = out.pop("FusedActivationFunction")
            if act not in _ACTIVATIONS:
                raise UnsupportedOpError(
                    f"{self.path}: {op_type} uses fused activation {act}, which hmrkit does not "
                    "implement"
                )
            out["activation"] = _ACTIVATIONS[act]
        if "Padding" in out:
            out["Padding"] = _PADDINGS[out["Padding"]]
        if op_type == "RESHAPE" and opts.NewShapeLength():
            out["NewShape"] = [int(s) for s in opts.NewShapeAsNumpy()]
        return out

    def sparse_values(self, index: int) -> np.ndarray:
        t = self.tensor(index)
        sp = t.Sparsity()
        if sp.BlockMapLength():
            raise TFLiteFormatError(
                f"{self.path}: tensor {index} ({t.Name().decode()}) is block-sparse; hmrkit "
                "densifies unblocked sparse tensors only"
            )
        formats, sizes, segments, indices = [], [], [], []
        for d in range(sp.DimMetadataLength()):
            dm = sp.DimMetadata(d)
            if dm.Format() == 0:
                formats.append("DENSE")
                sizes.append(dm.DenseSize())
                segments.append(None)
                indices.append(None)
            else:
                formats.append("SPARSE_CSR")
                sizes.append(None)
                segments.append(self._index_vector(dm.ArraySegmentsType(), dm.ArraySegments()))
                indices.append(self._index_vector(dm.ArrayIndicesType(), dm.ArrayIndices()))
        return densify(self.shape(index), [int(i) for i in sp.TraversalOrderAsNumpy()],
                       formats, sizes, segments, indices, self.constant(index))

    def _index_vector(self, kind: int, table) -> np.ndarray:
        classes = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}
        if kind not in classes:
            raise TFLiteFormatError(f"{self.path}: unknown sparse index vector type {kind}")
        vec = getattr(self.tflite, classes[kind])()
        vec.Init(table.Bytes, table.Pos)
        return vec.ValuesAsNumpy() if vec.ValuesLength() else np.zeros(0, np.int64)


def read_tflite(path: str | Path) -> TFLiteGraphSpec:
    """Parse ``path`` into a :class:`TFLiteGraphSpec` (float graph, constants folded).

    Raises :class:`UnsupportedOpError` naming the first operator that hmrkit's converter does
    not implement (with the list of those it does), :class:`TFLiteFormatError` for a file it
    cannot read.
    """
    path = Path(path)
    r = _Reader(path)
    g = r.graph
    tensors = [{"name": g.Tensors(i).Name().decode(), "shape": r.shape(i)}
               for i in range(g.TensorsLength())]
    constants: dict[int, np.ndarray] = {}
    for i in range(g.TensorsLength()):
        if g.Tensors(i).Sparsity() is None:
            value = r.constant(i)
            if value is not None:
                constants[i] = value
    ops = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        op_type = r.codes[op.OpcodeIndex()]
        inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if op_type == "DENSIFY":
            constants[outputs[0]] = r.sparse_values(inputs[0])
            continue
        if op_type == "DEQUANTIZE":
            src = inputs[0]
            if src not in constants:
                raise UnsupportedOpError(
                    f"{path}: operator {k} DEQUANTIZE of a non-constant tensor "
                    f"({tensors[src]['name']}); hmrkit folds constant float16 weights only"
                )
            if constants[src].dtype != np.float16:
                raise UnsupportedOpError(
                    f"{path}: operator {k} DEQUANTIZE of {constants[src].dtype} weights "
                    f"({tensors[src]['name']}); hmrkit folds float16 weights only"
                )
            constants[outputs[0]] = constants[src]
            continue
        if op_type not in SUPPORTED_OPS:
            raise UnsupportedOpError(
                f"{path}: operator {k} is {op_type}, which hmrkit's TFLite converter does not "
                f"implement (it handles {', '.join(SUPPORTED_OPS + _FOLDED_OPS)})"
            )
        for i in outputs:
            if g.Tensors(i).Type() != 0:
                raise TFLiteFormatError(
                    f"{path}: operator {k} {op_type} outputs a "
                    f"{_TYPE_NAMES.get(g.Tensors(i).Type(), g.Tensors(i).Type())} tensor; "
                    "hmrkit converts float32 graphs only"
                )
        ops.append({"type": op_type, "inputs": inputs, "outputs": outputs,
                    "options": r.options(op, op_type)})
    used = {i for op in ops for i in op["inputs"] if i >= 0}
    constants = {i: v for i, v in constants.items() if i in used}
    return TFLiteGraphSpec(
        tensors=tensors, ops=ops,
        inputs=[int(i) for i in g.InputsAsNumpy()],
        outputs=[int(i) for i in g.OutputsAsNumpy()],
        constants=constants,
        source={"file": path.name, "sha256": hashlib.sha256(r.data).hexdigest()},
    )
