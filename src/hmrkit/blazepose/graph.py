"""A TFLite float graph rebuilt as a trainable, batched ``torch.nn.Module``.

:class:`TFLiteGraph` runs the operators of a
:class:`~hmrkit.blazepose.tflite_reader.TFLiteGraphSpec` one by one with torch functions that
reproduce TFLite's kernels (``SAME`` padding split with the extra pixel after, legacy /
half-pixel / align-corners bilinear resizing, ``DEPTH_TO_SPACE`` in TensorFlow's channel
order, fused activations). Every constant tensor (convolution weights and
biases included) is an ``nn.Parameter``, so the network can be fine-tuned.

Layout: rank-4 tensors are NHWC in TFLite and **NCHW** here (the torch convention); other ranks
keep TFLite's layout. The batch dimension (1 in the file) is free: feed ``(B, C, H, W)``.

Outputs and intermediates are reached by TFLite tensor name (or index): ``net(x)`` returns the
graph outputs ``{name: tensor}``; ``net(x, keep=["name", ...])`` or ``keep="all"`` adds
intermediate tensors (see :meth:`TFLiteGraph.tensor_names` and :meth:`TFLiteGraph.find`).

A converted graph is saved with :func:`save_graph` (the spec as JSON and the weights, float16
where the file had float16, so the copy is exact) and loaded with :func:`load_graph` without
the ``tflite`` package.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GRAPH_FORMAT",
    "GRAPH_FORMAT_VERSION",
    "TFLiteGraph",
    "convert_tflite",
    "load_graph",
    "resize_bilinear",
    "save_graph",
    "same_padding",
]

GRAPH_FORMAT = "hmrkit-tflite-graph"
GRAPH_FORMAT_VERSION = 1
"""Bumped when the saved layout or the op semantics change (then ``fetch`` re-converts)."""


# ------------------------------------------------------------------ op helpers (pure functions)
def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding ``(before, after)`` along one axis (extra pixel after)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kh: int, kw: int, stride: tuple[int, int],
              dilation: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kh, stride[0], dilation[0])
    left, right = same_padding(x.shape[-1], kw, stride[1], dilation[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def _activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """A fused activation, in place (``x`` is always a fresh operator result)."""
    if name == "NONE":
        return x
    if name == "RELU":
        return F.relu_(x)
    if name == "RELU6":
        return F.hardtanh_(x, 0.0, 6.0)
    if name == "RELU_N1_TO_1":
        return F.hardtanh_(x, -1.0, 1.0)
    raise ValueError(f"unknown fused activation {name!r}")


def _source_coords(out_size: int, in_size: int, align_corners: bool, half_pixel: bool,
                   device, dtype):
    """TFLite's bilinear source coordinate of each output index along one axis."""
    i = torch.arange(out_size, device=device, dtype=dtype)
    if align_corners and out_size > 1:
        scale = (in_size - 1) / (out_size - 1)
    else:
        scale = in_size / out_size
    if half_pixel:
        src = (i + 0.5) * scale - 0.5
    else:
        src = i * scale
    lo = torch.floor(src)
    frac = src - lo
    lo_i = lo.long().clamp(0, in_size - 1)
    hi_i = (lo.long() + 1).clamp(0, in_size - 1)
    return lo_i, hi_i, frac


def resize_bilinear(x: torch.Tensor, size: tuple[int, int], align_corners: bool = False,
                    half_pixel_centers: bool = False) -> torch.Tensor:
    """TFLite ``RESIZE_BILINEAR`` of an NCHW tensor (all three coordinate conventions).

    ``half_pixel_centers``: ``src = (dst + 0.5) * in / out - 0.5`` (torch's
    ``align_corners=False``); ``align_corners``: ``src = dst * (in - 1) / (out - 1)``; neither
    (TF1 legacy): ``src = dst * in / out``. Indices outside the input clamp to its edge.
    """
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = x.shape[-2:]
    if align_corners and half_pixel_centers:
        raise ValueError("RESIZE_BILINEAR: align_corners and half_pixel_centers both set")
    if half_pixel_centers or align_corners:
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear",
                             align_corners=bool(align_corners))
    y0, y1, fy = _source_coords(out_h, in_h, False, False, x.device, x.dtype)
    x0, x1, fx = _source_coords(out_w, in_w, False, False, x.device, x.dtype)
    rows = x[..., y0, :] * (1 - fy)[:, None] + x[..., y1, :] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def _depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """TensorFlow ``DEPTH_TO_SPACE`` (channel index ``(i * block + j) * C + c``) on NCHW."""
    b, c, h, w = x.shape
    out_c = c // (block * block)
    x = x.reshape(b, block, block, out_c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, out_c, h * block, w * block)


_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _to_nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2) if t.dim() == 4 else t


def _to_nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


# ------------------------------------------------------------------ the module
class TFLiteGraph(nn.Module):
    """A float TFLite graph as a module (see the module docstring).

    Build it with :func:`convert_tflite` (from a ``.tflite`` file) or :func:`load_graph` (from a
    converted file). ``spec`` is the JSON part of a
    :class:`~hmrkit.blazepose.tflite_reader.TFLiteGraphSpec`; ``constants`` maps tensor index to
    array, in TFLite's layout (``layout="tflite"``, as read from a file) or already in torch's
    (``layout="torch"``, as saved by :func:`save_graph`): convolution weights ``(O, I, KH, KW)``,
    other rank-4 constants NCHW.
    """

    def __init__(self, spec: dict, constants: dict[int, np.ndarray | torch.Tensor],
                 layout: str = "tflite"):
        super().__init__()
        self.spec = spec
        self.tensors = spec["tensors"]
        self.ops = spec["ops"]
        self.input_index = list(spec["inputs"])
        self.output_index = list(spec["outputs"])
        self._names = {t["name"]: i for i, t in enumerate(self.tensors)}
        kinds = self._weight_kinds()
        self.params = nn.ParameterDict()
        for index, value in constants.items():
            if not torch.is_tensor(value):
                value = torch.from_numpy(np.array(value))  # a writable copy
            if layout == "tflite":
                value = self._to_torch_layout(value, kinds.get(int(index)))
            elif layout != "torch":
                raise ValueError(f"layout must be 'tflite' or 'torch', not {layout!r}")
            if value.is_floating_point():
                self.params[str(index)] = nn.Parameter(value.float())
            else:
                self.register_buffer(f"int_{index}", value, persistent=True)
        self._int_cache: dict[int, list[int]] = {}
        # last use of every tensor, to free activations early
        self._last_use: dict[int, int] = {}
        for k, op in enumerate(self.ops):
            for i in op["inputs"]:
                self._last_use[i] = k
        self._pad_folds = self._foldable_pads()
        for pad_in, _, conv_k in self._pad_folds.values():
            self._last_use[pad_in] = max(self._last_use[pad_in], conv_k)

    def _foldable_pads(self) -> dict[int, tuple[int, tuple[int, int], int]]:
        """Symmetric spatial PADs feeding only a VALID convolution: the convolution pads
        instead (same zeros, no copy). ``{pad output: (pad input, (ph, pw), conv op)}``."""
        consumers: dict[int, list[int]] = {}
        for k, op in enumerate(self.ops):
            for i in op["inputs"]:
                consumers.setdefault(i, []).append(k)
        folds = {}
        for op in self.ops:
            out = op["outputs"][0]
            if op["type"] != "PAD" or len(self.tensors[out]["shape"]) != 4:
                continue
            pads = self._const_list(op["inputs"][1])
            (b0, b1), (t, bo), (le, r), (c0, c1) = [(pads[2 * d], pads[2 * d + 1])
                                                    for d in range(4)]
            users = consumers.get(out, [])
            if (b0, b1, c0, c1) != (0, 0, 0, 0) or t != bo or le != r or len(users) != 1:
                continue
            conv = self.ops[users[0]]
            if (conv["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D") and conv["inputs"][0] == out
                    and conv["options"].get("Padding") == "VALID"
                    and out not in self.output_index):
                folds[out] = (op["inputs"][0], (t, le), users[0])
        return folds

    # --- layout of constants
    def _weight_kinds(self) -> dict[int, str]:
        kinds = {}
        for op in self.ops:
            if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                kinds[op["inputs"][1]] = op["type"]
        return kinds

    @staticmethod
    def _to_torch_layout(value: torch.Tensor, kind: str | None) -> torch.Tensor:
        if kind == "CONV_2D":  # [O, KH, KW, I] -> [O, I, KH, KW]
            return value.permute(0, 3, 1, 2).contiguous()
        if kind == "DEPTHWISE_CONV_2D":  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW]
            return value.permute(3, 0, 1, 2).contiguous()
        if value.dim() == 4:  # any other rank-4 constant: NHWC -> NCHW
            return value.permute(0, 3, 1, 2).contiguous()
        return value

    # --- names
    def tensor_names(self) -> list[str]:
        """TFLite names of all tensors (index order)."""
        return [t["name"] for t in self.tensors]

    def find(self, text: str = "") -> list[tuple[int, str, list[int]]]:
        """``(index, name, TFLite shape)`` of the computed tensors (operator outputs, in
        execution order) whose name contains ``text``: what ``keep`` can return."""
        return [(i, self.tensors[i]["name"], self.tensors[i]["shape"])
                for op in self.ops for i in op["outputs"] if text in self.tensors[i]["name"]]

    def output_names(self) -> list[str]:
        return [self.tensors[i]["name"] for i in self.output_index]

    def index_of(self, key: int | str) -> int:
        if isinstance(key, int):
            if not 0 <= key < len(self.tensors):
                raise KeyError(f"tensor index {key} out of range (0..{len(self.tensors) - 1})")
            return key
        if key not in self._names:
            raise KeyError(f"no tensor named {key!r} in this graph (see .find())")
        return self._names[key]

    # --- execution
    def _value(self, env: dict, index: int) -> torch.Tensor:
        if index in env:
            return env[index]
        key = str(index)
        if key in self.params:
            return self.params[key]
        buf = getattr(self, f"int_{index}", None)
        if buf is not None:
            return buf
        raise RuntimeError(f"tensor {index} ({self.tensors[index]['name']}) has no value yet")

    def _const_list(self, index: int) -> list[int]:
        """Integer constant (pads, sizes) as a list, read once (no device sync per call)."""
        if index not in self._int_cache:
            self._int_cache[index] = [int(v) for v in self._value({}, index).reshape(-1).tolist()]
        return self._int_cache[index]

    def forward(self, x: torch.Tensor, keep: Iterable[int | str] | str | None = None
                ) -> dict[str, torch.Tensor]:
        """Run the graph on ``x`` (``(B, C, H, W)`` for an image input).

        Returns ``{output name: tensor}`` plus the tensors named in ``keep`` (names or indices;
        ``"all"`` keeps every computed tensor).
        """
        (inp,) = self.input_index
        want = tuple(self.tensors[inp]["shape"])
        if len(want) == 4:
            expected = (want[3], want[1], want[2])
            if x.dim() != 4 or tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"TFLiteGraph: input has shape {tuple(x.shape)}, expected (B, "
                    f"{expected[0]}, {expected[1]}, {expected[2]}) (NCHW)"
                )
        keep_all = keep == "all"
        keep_set = set() if keep is None or keep_all else {self.index_of(k) for k in keep}
        retain = set(self.output_index) | keep_set
        folds = {} if keep_all else {o: f for o, f in self._pad_folds.items() if o not in keep_set}
        env: dict[int, torch.Tensor] = {inp: x}
        for k, op in enumerate(self.ops):
            args = op["inputs"]
            if op["outputs"][0] in folds:  # the convolution after it pads
                continue
            result = self._run(op, args, env, folds)
            env[op["outputs"][0]] = result
            if not keep_all:
                for i in set(args):
                    if i in env and self._last_use.get(i) == k and i not in retain:
                        del env[i]
        names = [self.tensors[i]["name"] for i in self.output_index]
        out = {name: env[i] for name, i in zip(names, self.output_index, strict=True)}
        extra = env.keys() if keep_all else keep_set
        for i in extra:
            if i not in env:
                raise KeyError(
                    f"tensor {i} ({self.tensors[i]['name']}) is not computed by the graph "
                    "(a constant or the input)"
                )
            out.setdefault(self.tensors[i]["name"], env[i])
        return out

    def _run(self, op: dict, args: list[int], env: dict, folds: dict) -> torch.Tensor:
        kind, opts = op["type"], op["options"]
        value = self._value
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            padding = (0, 0)
            if args[0] in folds:
                source, padding, _ = folds[args[0]]
                x = value(env, source)
            else:
                x = value(env, args[0])
            w = value(env, args[1])
            b = value(env, args[2]) if len(args) > 2 and args[2] >= 0 else None
            stride = (opts.get("StrideH", 1), opts.get("StrideW", 1))
            dil = (opts.get("DilationHFactor", 1), opts.get("DilationWFactor", 1))
            if opts.get("Padding") == "SAME":
                top, bottom = same_padding(x.shape[-2], w.shape[2], stride[0], dil[0])
                left, right = same_padding(x.shape[-1], w.shape[3], stride[1], dil[1])
                if top == bottom and left == right:  # let the convolution pad (no copy)
                    padding = (top, left)
                else:
                    x = F.pad(x, (left, right, top, bottom))
            groups = x.shape[1] if kind == "DEPTHWISE_CONV_2D" else x.shape[1] // w.shape[1]
            y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dil, groups=groups)
            return _activation(y, opts.get("activation", "NONE"))
        if kind == "ADD":
            a, b = value(env, args[0]), value(env, args[1])
            return _activation(a + b, opts.get("activation", "NONE"))
        if kind == "MAX_POOL_2D":
            x = value(env, args[0])
            k = (opts["FilterHeight"], opts["FilterWidth"])
            stride = (opts["StrideH"], opts["StrideW"])
            if opts.get("Padding") == "SAME":
                x = _pad_same(x, k[0], k[1], stride, (1, 1), value=-math.inf)
            return _activation(F.max_pool2d(x, k, stride), opts.get("activation", "NONE"))
        if kind == "PAD":
            x = value(env, args[0])
            pads = self._const_list(args[1])
            pairs = [(pads[2 * d], pads[2 * d + 1]) for d in range(len(pads) // 2)]
            if x.dim() == 4:  # NHWC pairs -> NCHW
                pairs = [pairs[0], pairs[3], pairs[1], pairs[2]]
            if pairs[0] != (0, 0):
                raise NotImplementedError("PAD along the batch dimension")
            flat = [p for pair in reversed(pairs) for p in pair]
            return F.pad(x, flat)
        if kind == "RESIZE_BILINEAR":
            x = value(env, args[0])
            size = self._const_list(args[1])
            return resize_bilinear(x, size, bool(opts.get("AlignCorners", False)),
                                   bool(opts.get("HalfPixelCenters", False)))
        if kind == "RESHAPE":
            x = value(env, args[0])
            shape = self.tensors[op["outputs"][0]]["shape"]
            if not shape or shape[0] != 1 or self.tensors[args[0]]["shape"][:1] != [1]:
                raise NotImplementedError(
                    f"RESHAPE {self.tensors[args[0]]['shape']} -> {shape}: hmrkit batches "
                    "reshapes that keep a leading batch dimension of 1 only"
                )
            y = _to_nhwc(x).reshape(x.shape[0], *shape[1:])
            return _to_nchw(y)
        if kind == "CONCATENATION":
            parts = [value(env, i) for i in args]
            axis = opts.get("Axis", 0)
            rank = parts[0].dim()
            axis = axis + rank if axis < 0 else axis
            if rank == 4:
                axis = _NHWC_TO_NCHW_AXIS[axis]
            return _activation(torch.cat(parts, dim=axis), opts.get("activation", "NONE"))
        if kind == "DEPTH_TO_SPACE":
            return _depth_to_space(value(env, args[0]), int(opts["BlockSize"]))
        if kind == "LOGISTIC":
            return torch.sigmoid(value(env, args[0]))
        if kind == "RELU":
            return F.relu(value(env, args[0]))
        if kind == "RELU6":
            return F.hardtanh(value(env, args[0]), 0.0, 6.0)
        raise NotImplementedError(f"TFLiteGraph: operator {kind} is not implemented")

    def __repr__(self) -> str:
        src = self.spec.get("source", {}).get("file", "?")
        n = sum(p.numel() for p in self.parameters())
        return f"TFLiteGraph(source={src}, ops={len(self.ops)}, parameters={n})"


# ------------------------------------------------------------------ conversion and files
def convert_tflite(path: str | os.PathLike) -> TFLiteGraph:
    """Read a ``.tflite`` file (needs the ``tflite`` package) into a :class:`TFLiteGraph`."""
    from .tflite_reader import read_tflite

    spec = read_tflite(path)
    return TFLiteGraph(spec.to_json(), spec.constants)


def save_graph(path: str | os.PathLike, graph: TFLiteGraph, half: bool = True,
               extra: dict | None = None) -> None:
    """Save ``graph`` atomically: spec JSON + weights (float16 when ``half`` and exact)."""
    from hmrkit.io import atomic_torch_save

    state = {}
    for key, p in graph.params.items():
        t = p.detach().cpu()
        if half and torch.equal(t.half().float(), t):
            t = t.half()
        state[key] = t
    for name, buf in graph.named_buffers():
        state[name] = buf.detach().cpu()
    atomic_torch_save(path, {
        "format": GRAPH_FORMAT, "version": GRAPH_FORMAT_VERSION,
        "spec": json.dumps(graph.spec), "tensors": state, "extra": json.dumps(extra or {}),
    })


class GraphFileError(ValueError):
    """A converted graph file that cannot be loaded."""


def read_graph_file(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """``(spec, constants, extra)`` of a file written by :func:`save_graph`."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GraphFileError(f"{path}: not a readable converted graph ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != GRAPH_FORMAT:
        raise GraphFileError(f"{path}: not an hmrkit converted TFLite graph")
    if blob.get("version") != GRAPH_FORMAT_VERSION:
        raise GraphFileError(
            f"{path}: converted with format version {blob.get('version')}, this hmrkit reads "
            f"version {GRAPH_FORMAT_VERSION}"
        )
    spec = json.loads(blob["spec"])
    constants = {}
    for key, value in blob["tensors"].items():
        index = int(key.removeprefix("int_"))
        constants[index] = value
    return spec, constants, json.loads(blob.get("extra", "{}"))


def load_graph(path: str | os.PathLike) -> TFLiteGraph:
    """Load a :func:`save_graph` file (no ``tflite`` package needed)."""
    spec, constants, _ = read_graph_file(path)
    return TFLiteGraph(spec, constants, layout="torch")
