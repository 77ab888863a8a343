"""Multi-RoI contrastive loss (eq. 17) and the projection head of the official code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_tensor

__all__ = ["contrastive_loss", "ProjectionHead", "sigmoid_relu_gate"]


def sigmoid_relu_gate(h: Tensor) -> Tensor:
    """Feature gate of the official Multi-RoI code (``models/hmr.py``): ``h * sigmoid(relu(h))``."""
    return h * torch.sigmoid(F.relu(h))


class ProjectionHead(nn.Module):
    """Projection to the contrastive latent space ``z`` (Multi-RoI sec. 3.3, Fig. 5).

    Official code: ``Linear(D, D) - BN - ReLU - Linear(D, D, bias=False) - BN``; with
    ``gate=True`` the input is first gated by :func:`sigmoid_relu_gate`, as the code does before
    the head. Accepts ``(N, D)`` or ``(B, M, D)`` (batch-normalised over all ``B * M`` rows) and
    returns the same leading shape with ``out_dim`` features (default ``D``). The output is not
    normalised; :func:`contrastive_loss` L2-normalises.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        out_dim: int | None = None,
        gate: bool = False,
    ):
        super().__init__()
        hidden_dim = dim if hidden_dim is None else hidden_dim
        out_dim = dim if out_dim is None else out_dim
        self.gate = gate
        """Apply ``h * sigmoid(relu(h))`` to the input first (official code)."""
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=False),
            nn.BatchNorm1d(out_dim),
        )

    def forward(self, h: Tensor) -> Tensor:
        lead = h.shape[:-1]
        if self.gate:
            h = sigmoid_relu_gate(h)
        return self.net(h.reshape(-1, h.shape[-1])).reshape(*lead, -1)


def _masked_logsumexp(logits: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise ``logsumexp`` over ``mask``; rows with an empty mask give 0 (flagged False)."""
    any_ = mask.any(dim=1)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    masked = logits.masked_fill(~mask, float("-inf"))
    # rows without any entry: plain zeros, so neither value nor gradient becomes NaN
    masked = torch.where(any_[:, None], masked, zero)
    return torch.logsumexp(masked, dim=1), any_


def contrastive_loss(
    features: Tensor,
    tau: float = 0.5,
    variant: str = "paper",
    *,
    scale_by_temperature: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Multi-RoI contrastive loss (Multi-RoI eq. 17; code ``models/conloss.py`` ``SupConLoss``).

    ``features (B, M, D)``: ``M`` RoI features of each of ``B`` persons (the projection-head
    outputs ``z``), L2-normalised here. For the anchor ``z_m^i``, the positives are the other
    RoIs of the same person ``z_n^i`` (``n != m``) and every RoI of another person is a
    negative; with cosine similarities over ``tau``::

        l(i, m) = -1/(M-1) sum_{n != m} log( exp(z_m^i . z_n^i / tau) / D(i, m) )

    ``variant="paper"`` (eq. 17): ``D = sum_{i' != i, m'} exp(z_m^i . z_m'^i' / tau)`` (negatives
    only). ``variant="supcon"`` (official code, supervised contrastive learning): ``D`` also holds
    the positives (every RoI but the anchor itself), and the loss is multiplied by ``tau``
    (``scale_by_temperature``, default True for "supcon", False for "paper").

    Normalisation: ``reduction="mean"`` averages ``l`` over the anchors that have a positive
    (and, for "paper", a negative) -- the code's mean; ``"sum"`` sums them as eq. 17 writes.
    0 when there is no such anchor (``M = 1``, or one person for "paper").
    """
    fn = "contrastive_loss"
    check_tensor(fn, "features", features, (None, None, None), "(B, M, D)")
    if variant not in ("paper", "supcon"):
        raise ValueError(f"{fn}: variant must be 'paper' or 'supcon', got {variant!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{fn}: reduction must be 'mean' or 'sum', got {reduction!r}")
    if scale_by_temperature is None:
        scale_by_temperature = variant == "supcon"
    B, M, D = features.shape
    z = F.normalize(features.reshape(B * M, D), p=2, dim=-1)
    logits = z @ z.T / tau
    person = torch.arange(B, device=features.device).repeat_interleave(M)
    same = person[:, None] == person[None, :]
    eye = torch.eye(B * M, dtype=torch.bool, device=features.device)
    positive = same & ~eye
    denominator = ~same if variant == "paper" else ~eye
    log_den, has_den = _masked_logsumexp(logits, denominator)
    n_pos = positive.sum(dim=1)
    anchor = (n_pos > 0) & has_den
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    pos_sum = torch.where(positive, logits - log_den[:, None], zero).sum(dim=1)
    per_anchor = -pos_sum / n_pos.clamp_min(1)
    per_anchor = torch.where(anchor, per_anchor, zero)
    loss = per_anchor.sum()
    if reduction == "mean":
        loss = loss / anchor.sum().clamp_min(1)
    if scale_by_temperature:
        loss = loss * tau
    return loss
