"""The TFLite -> torch converter against LiteRT: single operators, the real BlazePose graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmrkit.blazepose.graph import (
    TFLiteGraph,
    convert_tflite,
    load_graph,
    resize_bilinear,
    same_padding,
    save_graph,
)
from hmrkit.blazepose.tflite_reader import UnsupportedOpError, densify, read_tflite

from .tflite_builder import build_model, run_litert

litert = pytest.importorskip("ai_edge_litert.interpreter")

RNG = np.random.default_rng(0)


def _compare(tmp_path, model: bytes, x: np.ndarray, atol=1e-5):
    """Run ``model`` on NHWC ``x`` with LiteRT and with the converter; compare every output."""
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    ref = run_litert(model, x)
    net = convert_tflite(path)
    xt = torch.from_numpy(x)
    out = net(xt.permute(0, 3, 1, 2) if x.ndim == 4 else xt)
    for name, want in ref.items():
        got = out[name].detach()
        got = (got.permute(0, 2, 3, 1) if got.dim() == 4 else got).numpy()
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5, err_msg=name)
    return net


def _t(name, shape, data=None, dtype=np.float32):
    return {"name": name, "shape": list(shape), "data": data, "dtype": dtype}


def _w(*shape, scale=0.5):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


@pytest.mark.parametrize("size, kernel, stride, padding, act", [
    (9, 3, 2, 0, 3), (8, 3, 2, 0, 1), (8, 2, 1, 1, 0), (7, 5, 1, 0, 3), (10, 3, 3, 0, 2),
])
def test_conv2d_matches_litert(tmp_path, size, kernel, stride, padding, act):
    w, b = _w(4, kernel, kernel, 3), _w(4)
    out = (size - kernel) // stride + 1 if padding == 1 else -(-size // stride)
    model = build_model(
        [_t("x", [1, size, size, 3]), _t("w", w.shape, w), _t("b", [4], b),
         _t("y", [1, out, out, 4])],
        [{"op": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3],
          "options": ("Conv2DOptions", {"Padding": padding, "StrideW": stride,
                                        "StrideH": stride, "FusedActivationFunction": act})}],
        [0], [3])
    _compare(tmp_path, model, _w(1, size, size, 3, scale=2.0))


def test_dilated_conv_and_depthwise_multiplier(tmp_path):
    w, b = _w(4, 3, 3, 3), _w(4)
    dw, db = _w(1, 3, 3, 8), _w(8)
    model = build_model(
        [_t("x", [1, 11, 11, 3]), _t("w", w.shape, w), _t("b", [4], b), _t("c", [1, 11, 11, 4]),
         _t("dw", dw.shape, dw), _t("db", [8], db), _t("y", [1, 6, 6, 8])],
        [{"op": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3],
          "options": ("Conv2DOptions", {"Padding": 0, "StrideW": 1, "StrideH": 1,
                                        "DilationWFactor": 2, "DilationHFactor": 2})},
         {"op": "DEPTHWISE_CONV_2D", "inputs": [3, 4, 5], "outputs": [6],
          "options": ("DepthwiseConv2DOptions", {"Padding": 0, "StrideW": 2, "StrideH": 2,
                                                 "DepthMultiplier": 2,
                                                 "FusedActivationFunction": 3})}],
        [0], [6])
    _compare(tmp_path, model, _w(1, 11, 11, 3, scale=2.0))


def test_float16_weights_are_dequantized_exactly(tmp_path):
    w = _w(4, 1, 1, 3).astype(np.float16)
    b = _w(4).astype(np.float16)
    model = build_model(
        [_t("x", [1, 5, 5, 3]), _t("w16", w.shape, w, np.float16), _t("w", w.shape),
         _t("b16", [4], b, np.float16), _t("b", [4]), _t("y", [1, 5, 5, 4])],
        [{"op": "DEQUANTIZE", "inputs": [1], "outputs": [2]},
         {"op": "DEQUANTIZE", "inputs": [3], "outputs": [4]},
         {"op": "CONV_2D", "inputs": [0, 2, 4], "outputs": [5],
          "options": ("Conv2DOptions", {"Padding": 1, "StrideW": 1, "StrideH": 1})}],
        [0], [5])
    net = _compare(tmp_path, model, _w(1, 5, 5, 3))
    assert torch.equal(net.params["2"], torch.from_numpy(w.astype(np.float32)).permute(0, 3, 1, 2))
    assert len(net.ops) == 1  # the DEQUANTIZE ops were folded


def test_pad_then_valid_conv_is_folded_exactly(tmp_path):
    """A symmetric PAD feeding a VALID convolution becomes the convolution's padding; asking
    for the PAD's output still computes it."""
    pads = np.array([[0, 0], [1, 1], [2, 2], [0, 0]], np.int32)
    dw, db = _w(1, 3, 5, 4), _w(4)
    model = build_model(
        [_t("x", [1, 8, 7, 4]), _t("pads", [4, 2], pads, np.int32), _t("p", [1, 10, 11, 4]),
         _t("dw", dw.shape, dw), _t("db", [4], db), _t("y", [1, 4, 4, 4])],
        [{"op": "PAD", "inputs": [0, 1], "outputs": [2]},
         {"op": "DEPTHWISE_CONV_2D", "inputs": [2, 3, 4], "outputs": [5],
          "options": ("DepthwiseConv2DOptions", {"Padding": 1, "StrideW": 2, "StrideH": 2,
                                                 "DepthMultiplier": 1})}],
        [0], [5])
    net = _compare(tmp_path, model, _w(1, 8, 7, 4))
    assert set(net._pad_folds) == {2}
    x = torch.from_numpy(_w(2, 4, 8, 7))
    out = net(x, keep=["p"])
    torch.testing.assert_close(out["p"], torch.nn.functional.pad(x, (2, 2, 1, 1)))
    torch.testing.assert_close(out["y"], net(x)["y"])


@pytest.mark.parametrize("align, half", [(False, True), (True, False), (False, False)])
@pytest.mark.parametrize("size", [(8, 8), (5, 7), (3, 2)])
def test_resize_bilinear_flags(tmp_path, align, half, size):
    model = build_model(
        [_t("x", [1, 4, 3, 2]), _t("size", [2], np.array(size, np.int32), np.int32),
         _t("y", [1, *size, 2])],
        [{"op": "RESIZE_BILINEAR", "inputs": [0, 1], "outputs": [2],
          "options": ("ResizeBilinearOptions", {"AlignCorners": align,
                                                "HalfPixelCenters": half})}],
        [0], [2])
    _compare(tmp_path, model, _w(1, 4, 3, 2, scale=3.0))


def test_resize_bilinear_legacy_against_naive_loop():
    x = torch.from_numpy(_w(1, 1, 3, 4))
    got = resize_bilinear(x, (5, 7))
    want = torch.zeros(1, 1, 5, 7)
    for i in range(5):
        for j in range(7):
            sy, sx = i * 3 / 5, j * 4 / 7
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, 2), min(x0 + 1, 3)
            fy, fx = sy - y0, sx - x0
            top = x[0, 0, y0, x0] * (1 - fx) + x[0, 0, y0, x1] * fx
            bot = x[0, 0, y1, x0] * (1 - fx) + x[0, 0, y1, x1] * fx
            want[0, 0, i, j] = top * (1 - fy) + bot * fy
    torch.testing.assert_close(got, want)


def test_pool_pad_add_reshape_logistic(tmp_path):
    pads = np.array([[0, 0], [1, 2], [0, 1], [0, 3]], np.int32)
    model = build_model(
        [_t("x", [1, 7, 6, 2]), _t("p", [1, 4, 3, 2]), _t("pads", [4, 2], pads, np.int32),
         _t("padded", [1, 7, 4, 5]), _t("q", [1, 7, 4, 5]), _t("sum", [1, 7, 4, 5]),
         _t("shape", [2], np.array([1, 140], np.int32), np.int32), _t("flat", [1, 140]),
         _t("y", [1, 140])],
        [{"op": "MAX_POOL_2D", "inputs": [0], "outputs": [1],
          "options": ("Pool2DOptions", {"Padding": 0, "StrideW": 2, "StrideH": 2,
                                        "FilterWidth": 2, "FilterHeight": 3})},
         {"op": "PAD", "inputs": [1, 2], "outputs": [3]},
         {"op": "RELU6", "inputs": [3], "outputs": [4]},
         {"op": "ADD", "inputs": [3, 4], "outputs": [5],
          "options": ("AddOptions", {"FusedActivationFunction": 3})},
         {"op": "RESHAPE", "inputs": [5, 6], "outputs": [7]},
         {"op": "LOGISTIC", "inputs": [7], "outputs": [8]}],
        [0], [8, 5])
    _compare(tmp_path, model, _w(1, 7, 6, 2, scale=4.0))


def test_depth_to_space_concatenation_and_batched_reshape(tmp_path):
    model = build_model(
        [_t("x", [1, 3, 2, 8]), _t("d2s", [1, 6, 4, 2]), _t("cat", [1, 6, 4, 4]),
         _t("shape", [3], np.array([1, 48, 2], np.int32), np.int32), _t("r", [1, 48, 2]),
         _t("cat2", [1, 96, 2])],
        [{"op": "DEPTH_TO_SPACE", "inputs": [0], "outputs": [1],
          "options": ("DepthToSpaceOptions", {"BlockSize": 2})},
         {"op": "CONCATENATION", "inputs": [1, 1], "outputs": [2],
          "options": ("ConcatenationOptions", {"Axis": 3})},
         {"op": "RESHAPE", "inputs": [2, 3], "outputs": [4]},
         {"op": "CONCATENATION", "inputs": [4, 4], "outputs": [5],
          "options": ("ConcatenationOptions", {"Axis": 1})}],
        [0], [5, 1])
    net = _compare(tmp_path, model, _w(1, 3, 2, 8))
    # batched: every sample of a batch gives what it gives alone
    x = torch.from_numpy(_w(3, 8, 3, 2))
    batch = net(x)["cat2"]
    for i in range(3):
        torch.testing.assert_close(batch[i:i + 1], net(x[i:i + 1])["cat2"])


def test_unknown_op_is_a_clear_error(tmp_path):
    model = build_model(
        [_t("x", [1, 4, 4, 2]), _t("y", [1, 4, 4, 2])],
        [{"op": "RELU", "inputs": [0], "outputs": [1]}, {"op": "TANH", "inputs": [1],
                                                        "outputs": [0]}],
        [0], [1])
    path = tmp_path / "tanh.tflite"
    path.write_bytes(model)
    with pytest.raises(UnsupportedOpError, match=r"tanh.tflite: operator 1 is TANH, which"):
        read_tflite(path)


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "bad.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="bad.tflite: not a TFLite flatbuffer"):
        read_tflite(path)


def test_densify_against_naive_csr():
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(5, 1, 2, 7)) * (rng.random((5, 1, 2, 7)) < 0.4)
    # TFLite CSR: dims 0-2 dense, dim 3 sparse; segments per flattened row
    rows = dense.reshape(-1, 7)
    segments, indices, values = [0], [], []
    for row in rows:
        nz = np.nonzero(row)[0]
        indices.extend(nz)
        values.extend(row[nz])
        segments.append(len(indices))
    got = densify([5, 1, 2, 7], [0, 1, 2, 3], ["DENSE", "DENSE", "DENSE", "SPARSE_CSR"],
                  [5, 1, 2, None], [None, None, None, segments], [None, None, None, indices],
                  np.array(values))
    np.testing.assert_array_equal(got, dense)
    # a sparse middle dimension and a permuted traversal order (dense dims stored 1, 0)
    m = rng.normal(size=(3, 4)) * (rng.random((3, 4)) < 0.5)
    mt = m.T  # traversal: dim 1 first, then dim 0 (sparse)
    seg, idx, val = [0], [], []
    for row in mt:
        nz = np.nonzero(row)[0]
        idx.extend(nz)
        val.extend(row[nz])
        seg.append(len(idx))
    got = densify([3, 4], [1, 0], ["DENSE", "SPARSE_CSR"], [4, None], [None, seg],
                  [None, idx], np.array(val))
    np.testing.assert_array_equal(got, m)


def test_same_padding_matches_tensorflow_rule():
    assert same_padding(8, 3, 2) == (0, 1)
    assert same_padding(9, 3, 2) == (1, 1)
    assert same_padding(7, 5, 1) == (2, 2)
    assert same_padding(4, 2, 2) == (0, 0)


# ------------------------------------------------------------------ the real BlazePose graphs
def _real_file(stem: str):
    from hmrkit.blazepose.assets import MODEL_FILES, blazepose_dir, sha256_file

    path = blazepose_dir() / f"{stem}.tflite"
    if not path.is_file() or sha256_file(path) != MODEL_FILES[stem].sha256:
        pytest.skip(f"{path} not fetched (python -m hmrkit.blazepose fetch)")
    return path


def _crops():
    """Two real crops (public-domain photos from scikit-image) and one synthetic image."""
    import cv2
    from skimage import data

    astronaut = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    camera = cv2.resize(data.camera(), (256, 256), interpolation=cv2.INTER_AREA)
    camera = np.repeat(camera[..., None], 3, axis=2)
    yy, xx = np.mgrid[0:256, 0:256]
    synthetic = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    return np.stack([astronaut, camera, synthetic]).astype(np.float32) / 255.0


# Tolerances (float32 torch vs LiteRT's XNNPACK kernels on the same input), set from the
# measured differences (docs/blazepose.md) with margin: landmarks (x, y, z in 256-px crop
# units, visibility and presence logits), pose presence, mask as a probability (its logits
# reach -1000), heatmap logits, world landmarks in metres.
TOLERANCES = {"Identity": 0.02, "Identity_1": 1e-4, "Identity_2": 5e-3, "Identity_3": 5e-3,
              "Identity_4": 1e-4}


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.clip(x, -80, 80)))


@pytest.mark.parametrize("variant", ["lite", "full", pytest.param("heavy",
                                                                  marks=pytest.mark.slow)])
def test_landmark_graph_matches_litert(variant):
    from ai_edge_litert.interpreter import Interpreter

    path = _real_file(f"pose_landmark_{variant}")
    torch.set_num_threads(1)
    net = convert_tflite(path).eval()
    crops = _crops()
    with torch.no_grad():
        out = net(torch.from_numpy(crops).permute(0, 3, 1, 2))
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for b in range(len(crops)):
        it.set_tensor(it.get_input_details()[0]["index"], crops[b:b + 1])
        it.invoke()
        for d in it.get_output_details():
            want = it.get_tensor(d["index"])
            got = out[d["name"]][b:b + 1]
            got = (got.permute(0, 2, 3, 1) if got.dim() == 4 else got).numpy()
            if d["name"] == "Identity_2":
                got, want = _sigmoid(got), _sigmoid(want)
            np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCES[d["name"]],
                                       err_msg=f"{variant} {d['name']} crop {b}")


def test_detector_graph_with_sparse_weights_matches_litert():
    from ai_edge_litert.interpreter import Interpreter

    path = _real_file("pose_detection")
    net = convert_tflite(path).eval()
    x = np.random.default_rng(2).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(x).permute(0, 3, 1, 2))
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for b in range(2):
        it.set_tensor(it.get_input_details()[0]["index"], x[b:b + 1])
        it.invoke()
        for d in it.get_output_details():
            np.testing.assert_allclose(out[d["name"]][b:b + 1].numpy(),
                                       it.get_tensor(d["index"]), rtol=0, atol=2e-3)


@pytest.mark.filterwarnings("ignore:Warning. Enabling .experimental_preserve_all_tensors")
def test_landmark_graph_is_trainable_and_exposes_intermediates(tmp_path):
    path = _real_file("pose_landmark_lite")
    net = convert_tflite(path)
    x = torch.from_numpy(_crops()[:2]).permute(0, 3, 1, 2)
    name = net.find("Relu6")[-1][1]
    out = net(x, keep=[name])
    assert out[name].shape[0] == 2
    loss = out["Identity"].square().mean() + out["Identity_3"].square().mean() \
        + out["Identity_2"].square().mean() + out["Identity_4"].square().mean()
    loss.backward()
    params = list(net.parameters())
    assert params and all(isinstance(p, torch.nn.Parameter) for p in params)
    with_grad = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)
    assert with_grad >= 0.95 * len(params)
    # intermediate maps match LiteRT's preserved tensors
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[:1].permute(0, 2, 3, 1).numpy())
    it.invoke()
    index = net.index_of(name)
    want = it.get_tensor(index)
    np.testing.assert_allclose(out[name][:1].detach().permute(0, 2, 3, 1).numpy(), want,
                               atol=2e-3, rtol=0)
    # save / load round trip is exact (float16 weights stored as float16)
    save_graph(tmp_path / "lite.pt", net)
    again = load_graph(tmp_path / "lite.pt")
    assert isinstance(again, TFLiteGraph)
    for key, p in net.params.items():
        assert torch.equal(p, again.params[key]), key
