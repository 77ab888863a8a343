"""Training and test samples of the displacement network from synthetic shards, and its
training loop (dense-refinement paper sections 3.1 and 4, appendix A).

A sample is one labelled person: the crop of the image at the network's resolution, the
renders of an *initial estimate* in that crop (:func:`hmrkit.fit.dense.render_inputs`) with a
texture, and the target per-pixel displacement (eq. 1-2: the initial mesh's vertices projected
by the true body minus by the estimate, interpolated on the rendered pixels).

Initial estimates (the paper: perturbed ground truth, PARE / ProHMR outputs, true pose with a
predicted shape and camera): ``"perturbed"`` (Gaussian noise on the true pose, shape and
translation), ``"model"`` (a trained hmrkit method's estimate, :func:`model_estimates`) and
``"model_shape"`` (true pose with the method's shape and translation). Textures: the person's
true texture (the scene engine's ``texture<p>.png``), perturbed (pixel noise, brightness,
another person's texture), or none (:data:`TEXTURE_MIX`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hmrkit.body import load_body_model
from hmrkit.data.shards import decode_image
from hmrkit.fit.dense import crop_view, pixel_displacements, project, render_inputs
from hmrkit.fit.texture import Texture, perturb
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.rotations import axis_angle_to_rotmat
from hmrkit.io import atomic_save_npz, atomic_write_text
from hmrkit.render.maps import unique_vertex_colors

from .displacement import (
    DisplacementNet,
    NetConfig,
    endpoint_error,
    save_displacement_net,
    stacked_loss,
)

__all__ = ["INIT_MIX", "TEXTURE_MIX", "SampleConfig", "load_samples", "make_samples",
           "field_labels", "model_estimates", "predict_fields", "render_channels",
           "train_displacement"]

log = logging.getLogger(__name__)

INIT_MIX = {"perturbed": 0.5, "model": 0.35, "model_shape": 0.15}
"""Default mix of initial estimates (the paper's values are lost in our copy; a reading)."""
TEXTURE_MIX = {"true": 0.5, "noise": 0.2, "brightness": 0.2, "wrong": 0.1}
"""Default mix of training textures."""


@dataclass
class SampleConfig:
    """How samples are drawn (recorded with them)."""

    resolution: int = 64
    """Network crop side (pixels)."""
    crop_size: int = 96
    """Side of the person crop read first (that of the method the refiner follows: 96 px for
    the CLIFF r18 model, 256 for the BlazePose models; ``train_displacement.py samples`` takes
    the model's), then resampled to ``resolution`` as the refiner does (:func:`network_crops`)."""
    crop_style: str = "box"
    """How the person crop is cut (:data:`hmrkit.data.images.CROP_STYLES`), as the method the
    refiner follows cuts it: ``"box"`` (upright square) or ``"blazepose"`` (MediaPipe's
    rotated square, the BlazePose models, with ``crop_size`` 256)."""
    init_mix: dict = field(default_factory=lambda: dict(INIT_MIX))
    """Probabilities of the initial-estimate kinds (module doc)."""
    texture_mix: dict = field(default_factory=lambda: dict(TEXTURE_MIX))
    """Probabilities of ``true``, ``noise``, ``brightness``, ``wrong`` textures (``none``: no
    texture, an empty RGB render)."""
    pose_sigma: float = 0.1
    """Perturbed ground truth: std (radians) of the per-joint rotation noise."""
    root_sigma: float = 0.08
    """... of the root orientation noise (radians)."""
    betas_sigma: float = 0.5
    """... of the shape noise."""
    depth_sigma: float = 0.05
    """... of ``log t_z``."""
    shift_sigma: float = 0.02
    """... of the sideways translation, as a fraction of ``t_z``."""
    noise_level: tuple[float, float] = (0.03, 0.12)
    """Range of the texture noise std (in [0, 1] units)."""
    brightness: tuple[float, float] = (0.5, 1.5)
    """Range of the brightness factor."""
    seed: int = 0


def network_crops(image: Tensor, affine: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """Person crops ``(B, 3, S, S)`` resampled to the network's ``resolution`` (area averaging
    when shrinking), with their full-image -> crop affines ``(B, 2, 3)`` rescaled (float64)."""
    S = image.shape[-1]
    scaled = affine.detach().double() * (resolution / S)
    small = torch.nn.functional.interpolate(image.detach().float(), size=(resolution, resolution),
                                            mode="area" if resolution < S else "bilinear")
    return small, scaled


def render_channels(maps: dict[str, np.ndarray], renders: tuple[str, ...]) -> np.ndarray:
    """(C, S, S) the renders a network reads, concatenated (zero RGB when there is none)."""
    out = []
    for r in renders:
        if r == "rgb" and "rgb" not in maps:
            out.append(np.zeros((3, *maps["mask"].shape[1:]), np.float32))
        else:
            out.append(maps[r])
    return np.concatenate(out, 0)


def _perturbed(rng, go, bp, betas, transl, cfg: SampleConfig):
    B = len(go)
    noise = torch.as_tensor(rng.normal(0, cfg.pose_sigma, (B, 23, 3)), dtype=bp.dtype)
    bp = bp @ axis_angle_to_rotmat(noise)
    go = axis_angle_to_rotmat(torch.as_tensor(rng.normal(0, cfg.root_sigma, (B, 3)),
                                              dtype=go.dtype)) @ go
    betas = betas + torch.as_tensor(rng.normal(0, cfg.betas_sigma, betas.shape), dtype=betas.dtype)
    tz = transl[:, 2:] * torch.exp(torch.as_tensor(rng.normal(0, cfg.depth_sigma, (B, 1)),
                                                   dtype=transl.dtype))
    shift = torch.as_tensor(rng.normal(0, cfg.shift_sigma, (B, 2)), dtype=transl.dtype) * tz
    return go, bp, betas, torch.cat([transl[:, :2] + shift, tz], 1)


@torch.no_grad()
def model_estimates(method, data, split: str | None, batch_size: int = 32,
                    limit: int | None = None) -> dict[str, np.ndarray]:
    """A trained method's estimates of the persons of a synthetic split, in the dataset's
    order: ``rotmat (N, 24, 3, 3)``, ``betas``, ``transl``, ``index (N, 3)`` (shard, record,
    person)."""
    from hmrkit.data.dataset import SyntheticDataset

    keys = (*method.input_keys(), "meta/index")
    ds = SyntheticDataset(data, split, crop_size=method.crop_size, rois=method.num_rois,
                          keys=keys, crop_style=getattr(method, "crop_style", "box"))
    n = len(ds) if limit is None else min(limit, len(ds))
    out: dict[str, list] = {"rotmat": [], "betas": [], "transl": [], "index": []}
    method = method.eval()
    for start in range(0, n, batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, n))]
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        est = method.infer(batch)
        for k in ("rotmat", "betas", "transl"):
            out[k].append(getattr(est, k).double().numpy())
        out["index"].append(batch["meta/index"].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _texture_of(ds, index) -> Texture:
    s, r, p = (int(v) for v in index)
    raw = ds.shards[s].read(r, [f"texture{p}.png"])
    if f"texture{p}.png" not in raw:
        raise ValueError(f"{ds.shards[s].path}: record {r} has no texture{p}.png")
    return Texture(image=decode_image(raw[f"texture{p}.png"]))


def make_samples(data, split: str | None, cfg: SampleConfig, limit: int | None = None,
                 estimates: dict[str, np.ndarray] | None = None, texture: str | None = None,
                 texture_level: float | None = None, progress: bool = True
                 ) -> dict[str, np.ndarray]:
    """Samples (module doc) of the first ``limit`` persons of a synthetic split.

    ``estimates`` (from :func:`model_estimates`, same split and order) enables the ``model``
    and ``model_shape`` initial estimates; without them every sample is ``perturbed``.
    ``texture``: force one texture kind for every sample (``true``, ``noise``, ``brightness``,
    ``wrong``, ``none``; with ``texture_level``) instead of the mix (for test sets). Textures
    draw from their own random stream, so one seed gives the same persons the same initial
    estimates (and targets) whatever their textures: test sets differing only in texture.

    Returns arrays: ``image (N, 3, S, S)`` uint8, ``rgb`` uint8, ``depth`` / ``normals`` /
    ``vertex_colors`` float16, ``mask`` bool, ``displacement (N, 2, S, S)`` float16 (crop
    pixels), ``init`` (N,) kind index into ``init_kinds``, ``texture`` (N,) index into
    ``texture_kinds``, ``index (N, 3)``, and the initial parameters ``rotmat``, ``betas``,
    ``transl``.
    """
    from tqdm.auto import tqdm

    from hmrkit.data.dataset import SyntheticDataset

    keys = ("image", "crop_affine", "box_center", "box_size", "camera/intrinsics",
            "camera/image_size", "global_orient", "body_pose", "betas", "transl", "meta/index")
    ds = SyntheticDataset(data, split, crop_size=cfg.crop_size, keys=keys,
                          crop_style=cfg.crop_style)
    n = len(ds) if limit is None else min(limit, len(ds))
    rng = np.random.default_rng(cfg.seed)
    tex_rng = np.random.default_rng([cfg.seed, 1])  # textures: the estimates never depend on them
    body = load_body_model("anny24", dtype=torch.float64)
    faces = body.faces.numpy()
    colors = unique_vertex_colors(body.v_template.numpy())
    init_kinds = list(cfg.init_mix)
    tex_kinds = ["true", "noise", "brightness", "wrong", "none"]
    p_init = np.array([cfg.init_mix[k] for k in init_kinds], float)
    if estimates is None:
        p_init = np.array([k == "perturbed" for k in init_kinds], float)
    p_init /= p_init.sum()
    p_tex = np.array([cfg.texture_mix.get(k, 0.0) for k in tex_kinds], float)
    p_tex /= p_tex.sum()
    if estimates is not None:
        lookup = {tuple(int(v) for v in i): j for j, i in enumerate(estimates["index"])}
    out: dict[str, list] = {k: [] for k in ("image", "rgb", "depth", "normals", "vertex_colors",
                                            "mask", "displacement", "init", "texture",
                                            "index", "rotmat", "betas", "transl")}
    previous_texture = None
    for i in tqdm(range(n), disable=not progress, desc="samples", unit="person"):
        s = {k: v[None] for k, v in ds[i].items()}
        index = tuple(int(v) for v in s["meta/index"][0])
        go, bp = s["global_orient"].double(), s["body_pose"].double()
        betas, transl = s["betas"].double(), s["transl"].double()
        kind = init_kinds[rng.choice(len(init_kinds), p=p_init)]
        if kind != "perturbed" and index not in lookup:
            kind = "perturbed"
        if kind == "perturbed":
            i_go, i_bp, i_betas, i_transl = _perturbed(rng, go, bp, betas, transl, cfg)
        else:
            j = lookup[index]
            rot = torch.as_tensor(estimates["rotmat"][j:j + 1])
            i_betas = torch.as_tensor(estimates["betas"][j:j + 1])
            i_transl = torch.as_tensor(estimates["transl"][j:j + 1])
            i_go, i_bp = (rot[:, 0], rot[:, 1:]) if kind == "model" else (go, bp)
        with torch.no_grad():
            true = body(go, bp, betas[:, : body.num_betas]).vertices[0] + transl
            init_out = body(i_go, i_bp, i_betas[:, : body.num_betas])
            init = init_out.vertices[0] + i_transl
        camera = Camera.from_sample({k: v.double() for k, v in s.items()
                                     if k.startswith("camera/")})
        crop, affine = network_crops(s["image"], s["crop_affine"], cfg.resolution)
        view = crop_view(camera, affine, cfg.resolution)[0]
        tkind = texture or tex_kinds[tex_rng.choice(len(tex_kinds), p=p_tex)]
        tex = None
        if tkind != "none":
            tex = _texture_of(ds, index)
            if tkind == "noise":
                level = texture_level if texture_level is not None else tex_rng.uniform(
                    *cfg.noise_level)
                tex = perturb(tex, "noise", level, tex_rng)
            elif tkind == "brightness":
                level = texture_level if texture_level is not None else tex_rng.uniform(
                    *cfg.brightness)
                tex = perturb(tex, "brightness", level)
            elif tkind == "wrong":
                other = previous_texture
                if other is None or other.image is tex.image:
                    other = _texture_of(ds, ds.items[(i + 1) % len(ds)])
                tex = perturb(tex, "wrong", other=other)
            previous_texture = _texture_of(ds, index)
        maps, gbuf = render_inputs(view, init.numpy(), faces, colors,
                                   None if tex is None else tex.renderer(body))
        delta = project(view, true.numpy()) - project(view, init.numpy())
        disp = pixel_displacements(gbuf, faces, delta).transpose(2, 0, 1)
        out["image"].append(np.round(crop[0].numpy() * 255).astype(np.uint8))
        rgb = maps.get("rgb", np.zeros((3, cfg.resolution, cfg.resolution), np.float32))
        out["rgb"].append(np.round(rgb * 255).astype(np.uint8))
        for k in ("depth", "normals", "vertex_colors"):
            out[k].append(maps[k].astype(np.float16))
        out["mask"].append(maps["mask"].astype(bool))
        out["displacement"].append(disp.astype(np.float16))
        out["init"].append(init_kinds.index(kind))
        out["texture"].append(tex_kinds.index(tkind))
        out["index"].append(np.array(index))
        out["rotmat"].append(torch.cat([i_go[:, None], i_bp], 1)[0].numpy())
        out["betas"].append(i_betas[0].numpy())
        out["transl"].append(i_transl[0].numpy())
    arrays = {k: np.stack(v) for k, v in out.items()}
    arrays["init_kinds"] = np.array(init_kinds)
    arrays["texture_kinds"] = np.array(tex_kinds)
    arrays["config"] = np.array(json.dumps({**asdict(cfg), "data": str(data), "split": split,
                                            "texture": texture,
                                            "texture_level": texture_level}))
    return arrays


def save_samples(path, arrays: dict[str, np.ndarray]) -> None:
    atomic_save_npz(path, arrays)


def load_samples(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def batch_tensors(samples: dict[str, np.ndarray], idx, renders: tuple[str, ...]
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``image (B, 3, S, S)``, ``renders (B, C, S, S)``, ``target (B, 2, S, S)``,
    ``mask (B, 1, S, S)`` float32 tensors of samples ``idx``."""
    image = torch.from_numpy(samples["image"][idx].astype(np.float32) / 255.0)
    maps = {"rgb": samples["rgb"][idx].astype(np.float32) / 255.0}
    for k in ("depth", "normals", "vertex_colors"):
        maps[k] = samples[k][idx].astype(np.float32)
    rend = torch.from_numpy(np.concatenate([maps[r] for r in renders], 1))
    return (image, rend, *field_labels(samples, idx))


def field_labels(samples: dict[str, np.ndarray], idx=slice(None)) -> tuple[Tensor, Tensor]:
    """``target (B, 2, S, S)`` (the true field, crop pixels) and ``mask (B, 1, S, S)`` float32
    tensors of samples ``idx`` (default: all)."""
    target = torch.from_numpy(samples["displacement"][idx].astype(np.float32))
    mask = torch.from_numpy(samples["mask"][idx].astype(np.float32))
    return target, mask


@torch.no_grad()
def predict_fields(net: DisplacementNet, samples: dict[str, np.ndarray], batch_size: int = 32
                   ) -> Tensor:
    """(N, 2, S, S) the network's field (its last stack's output, crop pixels) on the samples'
    stored crops and renders."""
    net.eval()
    out = []
    for start in range(0, len(samples["mask"]), batch_size):
        idx = np.arange(start, min(start + batch_size, len(samples["mask"])))
        image, rend, _, _ = batch_tensors(samples, idx, net.config.renders)
        out.append(net(image, rend)[-1])
    return torch.cat(out)


def evaluate_epe(net: DisplacementNet, samples: dict[str, np.ndarray], batch_size: int = 32
                 ) -> np.ndarray:
    """(N,) end-point error (crop pixels, eq. 3) of the network on samples."""
    return endpoint_error(predict_fields(net, samples, batch_size),
                          *field_labels(samples)).numpy()


def train_displacement(train: dict[str, np.ndarray], val: dict[str, np.ndarray] | None,
                       config: NetConfig, steps: int, out: str | Path, batch_size: int = 8,
                       lr: float = 1e-3, seed: int = 0, eval_every: int = 250,
                       progress: bool = True) -> dict:
    """Train a :class:`DisplacementNet` from scratch with Adam (cosine decay), the loss after
    every stack (eq. 3), random horizontal jitter-free batches; writes ``out/net.pt`` (best
    validation EPE, else last) and ``out/log.json``; returns the log."""
    from tqdm.auto import tqdm

    out = Path(out)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = DisplacementNet(config)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    N = len(train["mask"])
    history: list[dict] = []
    best = (float("inf"), -1)
    start = time.time()
    bar = tqdm(range(1, steps + 1), disable=not progress, desc="train", unit="step")
    for step in bar:
        net.train()
        idx = rng.choice(N, size=min(batch_size, N), replace=False)
        image, rend, target, mask = batch_tensors(train, idx, config.renders)
        loss = stacked_loss(net(image, rend), target, mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(loss):.3f}")
        if val is not None and (step % eval_every == 0 or step == steps):
            epe = float(evaluate_epe(net, val).mean())
            history.append({"step": step, "train_loss": float(loss), "val_epe": epe,
                            "seconds": round(time.time() - start, 1)})
            log.info("step %d: val EPE %.3f px", step, epe)
            if epe < best[0]:
                best = (epe, step)
                save_displacement_net(net, out / "net.pt")
    if val is None:
        save_displacement_net(net, out / "net.pt")
    record = {"config": asdict(config), "steps": steps, "batch_size": batch_size, "lr": lr,
              "train_samples": N, "val_samples": None if val is None else len(val["mask"]),
              "best_val_epe": best[0], "best_step": best[1], "history": history,
              "seconds": round(time.time() - start, 1)}
    atomic_write_text(out / "log.json", json.dumps(record, indent=1))
    return record
