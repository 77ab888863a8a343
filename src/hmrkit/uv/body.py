"""The UV atlas of a body model, with its LSP-14 joint assignment, optionally cached on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .atlas import NoUVError, UVAtlas, _no_uv_message
from .joints import texel_joint_assignment


def _rest_lsp14(data) -> np.ndarray | None:
    """(14, 3) LSP-14 joints of a body model's rest mean shape, or None if unavailable."""
    from hmrkit.body.keypoints import lsp14_regressor

    reg = data.keypoint_regressors.get("lsp14")
    if reg is None:
        if data.num_joints != 24:
            return None
        reg = lsp14_regressor(data.v_template, data.num_joints)
    J = data.num_joints
    return reg[:, :J] @ data.joint_template + reg[:, J:] @ data.v_template


def atlas_for_body(
    data,
    resolution: int,
    dilate: int = 2,
    cache_dir: str | os.PathLike | None = None,
    joint_assignment: bool = True,
) -> UVAtlas:
    """Atlas of a :class:`~hmrkit.body.model.BodyModelData` (with its LSP-14 assignment).

    The LSP-14 joints of the rest (zero pose, mean shape) body come from the model's
    ``"lsp14"`` keypoint regressor, or from :func:`hmrkit.body.keypoints.lsp14_regressor`
    for a 24-joint model; ``joint_assignment=False`` skips the assignment.  With
    ``cache_dir``, the atlas is loaded from / saved to a file named after the model,
    resolution, dilation and a hash of the mesh arrays.
    """
    if data.texcoords is None or data.faces_texcoords is None:
        raise NoUVError(_no_uv_message(f"body model '{data.name}'"))
    path = None
    if cache_dir is not None:
        digest = hashlib.sha1()
        for arr in (data.faces, data.texcoords, data.faces_texcoords, data.vertex_flip,
                    data.v_template if joint_assignment else None):
            if arr is not None:
                digest.update(np.ascontiguousarray(arr).tobytes())
        tag = f"{digest.hexdigest()[:10]}{'j' if joint_assignment else ''}"
        path = Path(cache_dir) / f"uv_atlas_{data.name}_R{int(resolution)}_d{dilate}_{tag}.npz"
        if path.exists():
            return UVAtlas.load(path)
    atlas = UVAtlas.build(
        data.faces, data.texcoords, data.faces_texcoords, resolution, data.num_vertices,
        vertex_flip=data.vertex_flip, dilate=dilate,
    )
    atlas.meta["body_model"] = data.name
    if joint_assignment:
        joints14 = _rest_lsp14(data)
        if joints14 is not None:
            atlas.lsp14_assignment = texel_joint_assignment(
                atlas, data.v_template, joints14, data.vertex_flip
            )
    if path is not None:
        atlas.save(path)
    return atlas

