"""Shape-consistency metrics."""

from __future__ import annotations

import torch

__all__ = ["esv"]


def esv(betas_over_views: torch.Tensor, correction: int = 0) -> torch.Tensor:
    """ESV (ImpHMR): std of each shape coefficient across views, averaged over coefficients.

    ``betas_over_views (B, V, K)``: K shape coefficients predicted from V views (e.g. azimuths
    swept over a circle) of each of B subjects -> ``(B,)``. Unitless shape-coefficient units (no
    mm scaling). ``correction=0`` is the population std (numpy's default); 1 for the sample std.
    """
    if not isinstance(betas_over_views, torch.Tensor) or betas_over_views.dim() != 3:
        shape = getattr(betas_over_views, "shape", None)
        raise ValueError(
            f"esv: betas_over_views has shape {tuple(shape) if shape is not None else shape}, "
            "expected (B, V_views, K)"
        )
    if betas_over_views.shape[1] < 1 + correction:
        raise ValueError(
            f"esv: need at least {1 + correction} views, got {betas_over_views.shape[1]}"
        )
    return torch.std(betas_over_views, dim=1, correction=correction).mean(dim=-1)
