"""Shared test helpers: small random body models and numerical comparisons."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from hmrkit.body.keypoints import SMPL24_NAMES, SMPL24_PARENTS, lsp14_regressor
from hmrkit.body.model import BodyModelData


def random_body_data(
    num_vertices: int = 60, num_betas: int = 4, posedirs: bool = True, seed: int = 0
) -> BodyModelData:
    """A small random body model with SMPL's 24-joint tree (for fast engine tests)."""
    rng = np.random.default_rng(seed)
    V, J, K = num_vertices, 24, num_betas
    weights = rng.random((V, J)) ** 4
    weights /= weights.sum(1, keepdims=True)
    v_template = rng.normal(size=(V, 3)) * 0.3
    shapedirs = rng.normal(size=(V, 3, K)) * 0.01
    joint_reg = rng.random((J, V))
    joint_reg /= joint_reg.sum(1, keepdims=True)
    return BodyModelData(
        name="random",
        v_template=v_template,
        shapedirs=shapedirs,
        lbs_weights=weights,
        parents=np.array(SMPL24_PARENTS),
        joint_template=joint_reg @ v_template,
        joint_shapedirs=np.einsum("jv,vdk->jdk", joint_reg, shapedirs),
        faces=rng.integers(0, V, size=(30, 3)),
        joint_names=SMPL24_NAMES,
        posedirs=rng.normal(size=(9 * (J - 1), V, 3)) * 0.01 if posedirs else None,
        keypoint_regressors={"lsp14": lsp14_regressor(v_template)},
    )


def random_rotations(*shape: int, dtype=torch.float64, generator=None) -> torch.Tensor:
    """Uniformly random rotation matrices of shape (*shape, 3, 3)."""
    q = torch.randn(*shape, 4, dtype=dtype, generator=generator)
    q = q / q.norm(dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*shape, 3, 3)


TINY_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
         "--trainer.enable_model_summary", "false"]


def tiny_train(data, runs, *extra: str) -> int:
    """``hmrkit train`` on the tiny config (no validation unless ``extra`` sets ``--data.val``),
    logging under ``runs``; returns the exit status."""
    from hmrkit.cli import main

    return main(["train", "--config", TINY_CONFIG, "--data.train", str(data), "--data.val",
                 "null", "--trainer.logger.init_args.save_dir", str(runs), *QUIET, *extra])


def one_line(text: str) -> str:
    """The only non-empty line of ``text`` (fails when there are more)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


def skip_without_blazepose(variant: str = "full") -> None:
    """Skip the calling test when BlazePose's converted files are not fetched."""
    import pytest

    from hmrkit.blazepose.assets import BlazePoseModelError, model_path

    try:
        for name in ("detector", variant):
            model_path(name)
    except BlazePoseModelError as exc:
        pytest.skip(str(exc))


@functools.cache
def two_person_scene() -> dict:
    """A synthetic image with two people who face the camera enough for BlazePose to find
    both, and its labels (rendered once per session; do not modify)."""
    from hmrkit.data.synthetic.scene import SceneConfig, SceneEngine

    engine = SceneEngine(SceneConfig(seed=3, split="test", people=(0.0, 1.0, 0.0),
                                     occluder_prob=0.0, facing_uniform_prob=0.0,
                                     person_height_frac=(0.6, 0.8)))
    return engine.render(12)
