"""RoI-aware feature fusion of Multi-RoI HMR (Nie et al. 2024, sec. 3.1) and its variants.

Every fusion module maps the backbone features ``h (B, M, D)`` of the ``M`` RoIs of each person
and their boxes ``B (B, M, 3)`` (the CLIFF box information of each RoI,
:func:`hmrkit.geometry.cameras.cliff_bbox_info`) to

- RoI-specific fused features ``u_m = sum_n w_mn h_n`` (B, M, D),
- fusion weights ``w (B, M, M)``, each row a distribution over the RoIs ``n`` (sums to one),
- the RoI-shared feature ``u_bar = mean_m u_m`` (B, D) (the paper's average pooling, eq. 6).

Variants (the ``fusion`` part of :class:`hmrkit.models.methods.multiroi.MultiRoI`, a class path;
:data:`FUSIONS` names them). Every variant is built as ``Fusion(dim, num_rois, box_dim, ...)``:
the first three are given by the method (feature width, RoIs, box information width), the
others are the variant's own settings:

- ``"raf"`` :class:`RoIAwareFusion`, the paper's eqs. 2-4 (default) with the relation computed
  as the PE of the box difference (the literal eq. 2 cancels in eq. 4's softmax, see the class);
  ``relation`` selects the Table 3 ablations (PE of the RoI's own box, no box at all);
- ``"raf-code"`` :class:`CodeRoIFusion`, the official code's ``HMR_sim`` fusion (PE of the box
  difference, per-pair ``Linear`` to 256, concatenation over ``n``, tanh MLP to ``M`` logits);
- ``"attention"`` :class:`AttentionFusion`, scaled dot-product self-attention over the RoIs
  (queries and keys from the feature and the PE of the box), an hmrkit variant;
- ``"none"`` :class:`NoFusion`, the "w/o RAF" ablation: ``u_m = h_m``, ``u_bar`` the mean of the
  backbone features.

``"raf"``, ``"attention"`` and ``"none"`` are equivariant to a permutation of the RoIs (the
RoI-specific outputs are permuted alike and ``u_bar`` does not change); ``"raf-code"`` is not
(its MLP reads the ``M`` pairs in a fixed order), as in the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "CodeRoIFusion",
    "FusionOutput",
    "NoFusion",
    "RoIAwareFusion",
    "positional_encoding",
    "positional_encoding_dim",
]

PE_FREQUENCIES = 32
"""``L`` of the positional encoding (paper eq. 3 and Table 3; official ``models/code.py``)."""


def positional_encoding_dim(d_in: int = 3, frequencies: int = PE_FREQUENCIES,
                            include_input: bool = True) -> int:
    """Size of :func:`positional_encoding`'s output: ``d_in (include_input + 2 L)`` (195 for the
    3 box values and ``L = 32``)."""
    return d_in * (2 * frequencies + int(include_input))


def positional_encoding(x: Tensor, frequencies: int = PE_FREQUENCIES,
                        include_input: bool = True) -> Tensor:
    """NeRF positional encoding (Multi-RoI eq. 3) of every value of ``x (..., d)``.

    ``gamma(p) = (p, sin(pi p), cos(pi p), sin(2 pi p), cos(2 pi p), ...,
    sin(2^(L-1) pi p), cos(2^(L-1) pi p))``, ``L = frequencies`` (frequencies ``pi 2^k``,
    ``k = 0 .. L-1``, as the official ``PositionalEncoding``; the paper writes the last one as
    ``2^L pi``). Computed in float32 at least (float16 / bfloat16 inputs are promoted).
    Output ``(..., d (include_input + 2 L))``: the input first, then for each
    frequency the sines of the ``d`` values and their cosines. With ``L = 32`` the highest
    frequencies exceed float32 precision (``2^31 pi p``): those entries are deterministic but
    effectively pseudo-random, as in the official code.
    """
    if frequencies < 0:
        raise ValueError(f"positional_encoding: frequencies must be >= 0, got {frequencies}")
    x = x.to(_at_least_float32(x.dtype))  # 2^k pi overflows float16 from k = 15
    parts = [x] if include_input else []
    if frequencies:
        freqs = math.pi * 2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)
        angles = x[..., None, :] * freqs[:, None]  # (..., L, d)
        waves = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-2)  # (..., L, 2, d)
        parts.append(waves.flatten(-3))
    if not parts:
        return x[..., :0]
    return torch.cat(parts, dim=-1)


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


@dataclass
class FusionOutput:
    """What a fusion module returns."""

    roi: Tensor
    """(B, M, D) RoI-specific fused features ``u_m`` (eq. 4)."""
    shared: Tensor
    """(B, D) RoI-shared feature ``u_bar = mean_m u_m`` (average pooling, eq. 6)."""
    weights: Tensor
    """(B, M, M) fusion weights ``w_mn``: row ``m`` is the distribution over ``n`` used for
    ``u_m`` (identity for :class:`NoFusion`)."""


def _check_inputs(name: str, h: Tensor, boxes: Tensor, box_dim: int) -> None:
    if h.dim() != 3:
        raise ValueError(f"{name}: features have shape {tuple(h.shape)}, expected (B, M, D)")
    if boxes.shape != (*h.shape[:2], box_dim):
        raise ValueError(
            f"{name}: boxes have shape {tuple(boxes.shape)}, expected (B, M, {box_dim}) "
            f"matching the features {tuple(h.shape)}"
        )


def _softmax(logits: Tensor) -> Tensor:
    """Softmax over the last axis in at least float32 (half-precision logits under autocast)."""
    return torch.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)


def _fuse(h: Tensor, weights: Tensor) -> FusionOutput:
    """``u_m = sum_n w_mn h_n`` and their mean."""
    u = torch.einsum("bmn,bnd->bmd", weights.to(h.dtype), h)
    return FusionOutput(u, u.mean(dim=1), weights)


class RoIAwareFusion(nn.Module):
    """RoI-aware fusion, RAF (Multi-RoI eqs. 2-4, Fig. 3).

    ``F_mn = [h_n, gamma_mn]``, ``w_m. = softmax_n(Linear(F_mn))`` (one linear layer to a
    scalar, eq. 4), ``u_m = sum_n w_mn h_n``; the shared feature is ``mean_m u_m`` (eq. 6), with
    :func:`positional_encoding` ``gamma`` of each of the 3 box values.

    ``relation`` picks ``gamma_mn`` (paper Table 3 has the last two as ablations):

    - ``"relative"`` (default): ``gamma(B_m - B_n)``, the PE of the box difference, as the
      official code computes it. Read literally, eq. 2's ``gamma(B_m) - gamma(B_n)`` is useless
      inside eq. 4: a single linear layer gives ``c . gamma(B_m) - c . gamma(B_n)``, whose first
      term is the same for every ``n`` and cancels in the softmax over ``n``, so the weights and
      all ``u_m`` would not depend on ``m`` and every RoI would get the same camera feature;
    - ``"relative-paper"``: that literal ``gamma(B_m) - gamma(B_n)`` (kept to show the point);
    - ``"absolute"``: ``gamma(B_n)``, the PE of the RoI's own box;
    - ``"none"``: ``[h_n]`` only.

    Only ``"relative"`` gives RoI-specific weights; the others give identical ``u_m``.
    """

    RELATIONS = ("relative", "relative-paper", "absolute", "none")

    def __init__(self, dim: int, num_rois: int = 5, box_dim: int = 3,
                 frequencies: int = PE_FREQUENCIES, relation: str = "relative"):
        """``frequencies``: ``L`` of the positional encoding (paper: 32); ``relation``: see the
        class doc (Table 3 ablations)."""
        super().__init__()
        if relation not in self.RELATIONS:
            raise ValueError(
                f"RoIAwareFusion: relation must be one of {self.RELATIONS}, got {relation!r}"
            )
        self.dim, self.box_dim, self.frequencies = dim, box_dim, frequencies
        self.relation = relation
        self.pe_dim = 0 if relation == "none" else positional_encoding_dim(box_dim, frequencies)
        self.score = nn.Linear(dim + self.pe_dim, 1)
        """The linear layer of eq. 4: ``[h_n, gamma_mn] -> logit of w_mn``."""

    def forward(self, h: Tensor, boxes: Tensor) -> FusionOutput:
        _check_inputs("RoIAwareFusion", h, boxes, self.box_dim)
        weight = self.score.weight[0].to(h.dtype)
        # Linear([h_n, gamma_mn]) = a . h_n + c . gamma_mn + bias, computed without
        # materialising the (B, M, M, D + P) concatenation
        logits = (h @ weight[: self.dim])[:, None, :] + self.score.bias.to(h.dtype)
        boxes = boxes.to(_at_least_float32(boxes.dtype))  # PE in float32 even under autocast
        c = self.score.weight[0, self.dim:].to(boxes.dtype)
        if self.relation == "relative":
            diff = boxes[:, :, None, :] - boxes[:, None, :, :]  # (B, m, n, 3) = B_m - B_n
            logits = logits + positional_encoding(diff, self.frequencies) @ c
        elif self.relation == "relative-paper":
            proj = positional_encoding(boxes, self.frequencies) @ c  # (B, M): c . gamma(B_m)
            logits = logits + (proj[:, :, None] - proj[:, None, :])
        elif self.relation == "absolute":
            logits = logits + (positional_encoding(boxes, self.frequencies) @ c)[:, None, :]
        B, M, _ = h.shape
        return _fuse(h, _softmax(logits.expand(B, M, M)))


class CodeRoIFusion(nn.Module):
    """The official code's fusion (``models/hmr.py`` ``HMR_sim``; methods.md "001").

    For the row ``m`` and each RoI ``n``:
    ``e_mn = Linear(D + P -> hidden)([h_n, gamma(B_m - B_n)])`` (PE of the box difference,
    195-D); ``logits_m = MLP(concat_n e_mn)`` with
    ``Linear(hidden M, hidden) - tanh - Linear(hidden, hidden) - tanh - Linear(hidden, M) - tanh``;
    ``w_m. = softmax(logits_m)``; ``u_m = sum_n w_mn h_n``. ``num_rois`` is fixed at
    construction (the MLP reads the pairs in order).
    """

    def __init__(self, dim: int, num_rois: int = 5, box_dim: int = 3,
                 frequencies: int = PE_FREQUENCIES, hidden: int = 256):
        """``hidden``: width of the pair embedding and of the MLP (code: 256)."""
        super().__init__()
        self.dim, self.num_rois = dim, num_rois
        self.box_dim, self.frequencies = box_dim, frequencies
        self.pe_dim = positional_encoding_dim(box_dim, frequencies)
        self.pair = nn.Linear(dim + self.pe_dim, hidden)
        """``fuse_fc`` of the code: ``[h_n, gamma(B_m - B_n)] -> hidden``."""
        self.mlp = nn.Sequential(
            nn.Linear(hidden * num_rois, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, num_rois), nn.Tanh(),
        )
        """``attention`` of the code: concatenated pair embeddings -> ``M`` logits."""

    def forward(self, h: Tensor, boxes: Tensor) -> FusionOutput:
        _check_inputs("CodeRoIFusion", h, boxes, self.box_dim)
        B, M, _ = h.shape
        if M != self.num_rois:
            raise ValueError(f"CodeRoIFusion: built for {self.num_rois} RoIs, got {M}")
        diff = boxes[:, :, None, :] - boxes[:, None, :, :]  # (B, m, n, 3) = B_m - B_n
        pe = positional_encoding(diff, self.frequencies)  # (B, M, M, P), float32 at least
        w = self.pair.weight
        e = ((h @ w[:, : self.dim].to(h.dtype).T)[:, None] + pe @ w[:, self.dim:].to(pe.dtype).T
             + self.pair.bias.to(pe.dtype))
        logits = self.mlp(e.reshape(B, M, -1))
        return _fuse(h, _softmax(logits))


class AttentionFusion(nn.Module):
    """Self-attention over the RoIs of a person (hmrkit variant, not in the paper).

    Tokens ``x_m = [h_m, gamma(B_m)]``; ``w_m. = softmax_n(q_m . k_n / sqrt(d))`` with
    ``q = W_q x``, ``k = W_k x`` (``d = attention_dim``); ``u_m = sum_n w_mn h_n`` (values are the
    backbone features themselves, so ``u_m`` stays a convex combination like RAF's).
    """

    def __init__(self, dim: int, num_rois: int = 5, box_dim: int = 3,
                 frequencies: int = PE_FREQUENCIES, attention_dim: int = 256):
        """``attention_dim``: width of the queries and keys."""
        super().__init__()
        self.dim, self.box_dim, self.frequencies = dim, box_dim, frequencies
        self.pe_dim = positional_encoding_dim(box_dim, frequencies)
        self.query = nn.Linear(dim + self.pe_dim, attention_dim)
        self.key = nn.Linear(dim + self.pe_dim, attention_dim)
        self.scale = attention_dim ** -0.5

    def forward(self, h: Tensor, boxes: Tensor) -> FusionOutput:
        _check_inputs("AttentionFusion", h, boxes, self.box_dim)
        pe = positional_encoding(boxes, self.frequencies)  # float32 at least
        x = torch.cat([h.to(pe.dtype), pe], dim=-1)
        logits = self.query(x) @ self.key(x).transpose(1, 2) * self.scale
        return _fuse(h, _softmax(logits))


class NoFusion(nn.Module):
    """No fusion ("w/o RAF" ablation, paper Table 2; code ``wo_fuse``): ``u_m = h_m`` and the
    shared feature is the mean of the backbone features."""

    def __init__(self, dim: int = 0, num_rois: int = 5, box_dim: int = 3):
        super().__init__()
        self.box_dim = box_dim

    def forward(self, h: Tensor, boxes: Tensor) -> FusionOutput:
        _check_inputs("NoFusion", h, boxes, self.box_dim)
        B, M, _ = h.shape
        dtype = _at_least_float32(h.dtype)
        eye = torch.eye(M, dtype=dtype, device=h.device).expand(B, M, M)
        return FusionOutput(h, h.mean(dim=1), eye)


FUSIONS: dict[str, type[nn.Module]] = {
    "raf": RoIAwareFusion, "raf-code": CodeRoIFusion, "attention": AttentionFusion,
    "none": NoFusion,
}
"""Short names of the variants (the ablation tables, checkpoints of hmrkit < 0.2)."""
