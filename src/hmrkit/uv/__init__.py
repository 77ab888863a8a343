"""Continuous UV maps (DecoMR's "boundary-free" UV, DMP / UVI): a texel atlas over a mesh's UVs.

A :class:`UVAtlas` is built once per body model and resolution (and can be cached to ``.npz``).
For every texel of an ``R x R`` UV map it stores the triangle whose UV footprint contains the
texel centre, that triangle's three mesh vertices and the centre's barycentric coordinates:

- :func:`vertex_to_uv`: per-vertex values -> UV map, ``M(t) = sum_k b_k(t) x_{v_k(t)}``;
- :func:`uv_to_vertex`: UV map -> per-vertex values, bilinear sampling at each vertex's
  texture coordinates (restricted to texels of the vertex's mesh neighbourhood by default),
  duplicates across UV seams averaged; or a least-squares fit (coarse meshes);
- :func:`image_to_uv`: image-space features -> UV space through a predicted IUV image (each
  foreground pixel rounded to the texel of its UV, features scatter-averaged);
- :func:`texel_flip_permutation` / :func:`flip_uv`: the left-right mirror in UV space
  (UVI's symmetry loss);
- :func:`texel_joint_assignment` / :func:`joints_from_uv`: texels assigned to the 14 LSP
  joints and joints read back from a UV map of joint positions (DMP's ``J_initial``).

Texel convention (image-like, used everywhere here): ``uv_map[..., i, j]`` is texel row ``i``,
column ``j``; its centre is at ``u = (j + 0.5) / R`` and ``v = 1 - (i + 0.5) / R``, so row 0
is the top of the texture image (``v`` close to 1; texture coordinates have ``v`` up, OBJ
convention) and column 0 is ``u`` close to 0.  In ``torch.nn.functional.grid_sample`` terms,
with ``align_corners=False``, a UV point is the grid point ``x = 2 u - 1``, ``y = 1 - 2 v``.
Internally "texel space" is ``X = u R - 0.5`` (column), ``Y = (1 - v) R - 0.5`` (row), where
texel centres are the integer points.

The atlas arrays are numpy; the functions take and return torch tensors (batch first,
differentiable with respect to the values, any float dtype and device; the index tensors
are cached on the atlas per device and dtype).

Modules: :mod:`.atlas` (:class:`UVAtlas`, built by rasterising the mesh's UVs), :mod:`.transfer`
(vertex <-> UV <-> image), :mod:`.symmetry` (the mirror in UV space), :mod:`.joints` (LSP-14
joints in UV space), :mod:`.body` (the atlas of a body model, cached).
"""

from .atlas import ATLAS_FORMAT, NoUVError, UVAtlas, texel_centers
from .body import atlas_for_body
from .joints import joints_from_uv, texel_joint_assignment, vertex_joint_assignment
from .symmetry import flip_uv, texel_flip_permutation, uv_islands
from .transfer import LSTSQ_MAX_VERTICES, image_to_uv, uv_to_vertex, vertex_to_uv

__all__ = [
    "ATLAS_FORMAT",
    "LSTSQ_MAX_VERTICES",
    "NoUVError",
    "UVAtlas",
    "atlas_for_body",
    "flip_uv",
    "image_to_uv",
    "joints_from_uv",
    "texel_centers",
    "texel_flip_permutation",
    "texel_joint_assignment",
    "uv_islands",
    "uv_to_vertex",
    "vertex_joint_assignment",
    "vertex_to_uv",
]
