"""Write tiny ``.tflite`` models (one or a few operators) for converter tests.

Uses the flatbuffer builders generated in the PyPI ``tflite`` package, so single operators
can be run by LiteRT and by hmrkit's converter on the same input.
"""

from __future__ import annotations

import importlib

import flatbuffers
import numpy as np

_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2}


def _module(name: str):
    return importlib.import_module(f"tflite.{name}")


def _vector(builder, values, dtype) -> int:
    return builder.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _options(builder, kind: str, fields: dict) -> int:
    mod = _module(kind)
    vectors = {}
    for key, value in fields.items():
        if isinstance(value, (list, tuple)):
            vectors[key] = _vector(builder, value, np.int32)
    getattr(mod, f"{kind}Start")(builder)
    for key, value in fields.items():
        adder = getattr(mod, f"{kind}Add{key}")
        adder(builder, vectors.get(key, value))
    return getattr(mod, f"{kind}End")(builder)


def build_model(tensors: list[dict], ops: list[dict], inputs: list[int], outputs: list[int]
                ) -> bytes:
    """A one-subgraph TFLite model.

    ``tensors``: ``{"name", "shape", "dtype" (default float32), "data" (constant, optional)}``;
    ``ops``: ``{"op": builtin name, "inputs", "outputs", "options": (OptionsTableName,
    {Field: value})}`` (options optional).
    """
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.BuiltinOptions import BuiltinOptions

    b = flatbuffers.Builder(1024)
    # buffers: 0 is the empty sentinel
    buffer_data = [None]
    tensor_buffer = []
    for t in tensors:
        if t.get("data") is not None:
            tensor_buffer.append(len(buffer_data))
            buffer_data.append(np.ascontiguousarray(t["data"], dtype=t.get("dtype", np.float32)))
        else:
            tensor_buffer.append(0)
    buffers = []
    for data in buffer_data:
        vec = None
        if data is not None:
            raw = data.tobytes()
            b.StartVector(1, len(raw), 16)
            b.head -= len(raw)
            b.Bytes[b.head:b.head + len(raw)] = raw
            vec = b.EndVector()
        mod = _module("Buffer")
        mod.BufferStart(b)
        if vec is not None:
            mod.BufferAddData(b, vec)
        buffers.append(mod.BufferEnd(b))
    tensor_offsets = []
    for t, buf in zip(tensors, tensor_buffer, strict=True):
        name = b.CreateString(t["name"])
        shape = _vector(b, t["shape"], np.int32)
        mod = _module("Tensor")
        mod.TensorStart(b)
        mod.TensorAddShape(b, shape)
        mod.TensorAddType(b, _TYPES[np.dtype(t.get("dtype", np.float32))])
        mod.TensorAddBuffer(b, buf)
        mod.TensorAddName(b, name)
        tensor_offsets.append(mod.TensorEnd(b))
    op_names = sorted({op["op"] for op in ops})
    codes = []
    for name in op_names:
        number = getattr(BuiltinOperator, name)
        mod = _module("OperatorCode")
        mod.OperatorCodeStart(b)
        mod.OperatorCodeAddDeprecatedBuiltinCode(b, min(number, 127))
        mod.OperatorCodeAddBuiltinCode(b, number)
        mod.OperatorCodeAddVersion(b, 1)
        codes.append(mod.OperatorCodeEnd(b))
    op_offsets = []
    for op in ops:
        ins = _vector(b, op["inputs"], np.int32)
        outs = _vector(b, op["outputs"], np.int32)
        opt = None
        if "options" in op:
            kind, fields = op["options"]
            opt = (getattr(BuiltinOptions, kind), _options(b, kind, fields))
        mod = _module("Operator")
        mod.OperatorStart(b)
        mod.OperatorAddOpcodeIndex(b, op_names.index(op["op"]))
        mod.OperatorAddInputs(b, ins)
        mod.OperatorAddOutputs(b, outs)
        if opt is not None:
            mod.OperatorAddBuiltinOptionsType(b, opt[0])
            mod.OperatorAddBuiltinOptions(b, opt[1])
        op_offsets.append(mod.OperatorEnd(b))

    def offsets_vector(items):
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    sg = _module("SubGraph")
    t_vec, o_vec = offsets_vector(tensor_offsets), offsets_vector(op_offsets)
    in_vec, out_vec = _vector(b, inputs, np.int32), _vector(b, outputs, np.int32)
    sg.SubGraphStart(b)
    sg.SubGraphAddTensors(b, t_vec)
    sg.SubGraphAddInputs(b, in_vec)
    sg.SubGraphAddOutputs(b, out_vec)
    sg.SubGraphAddOperators(b, o_vec)
    subgraph = sg.SubGraphEnd(b)
    model = _module("Model")
    codes_vec = offsets_vector(codes)
    sub_vec = offsets_vector([subgraph])
    buf_vec = offsets_vector(buffers)
    desc = b.CreateString("hmrkit test model")
    model.ModelStart(b)
    model.ModelAddVersion(b, 3)
    model.ModelAddOperatorCodes(b, codes_vec)
    model.ModelAddSubgraphs(b, sub_vec)
    model.ModelAddDescription(b, desc)
    model.ModelAddBuffers(b, buf_vec)
    b.Finish(model.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_litert(model: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``model`` with LiteRT on one input; ``{output name: array}``."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
