"""Robust costs of the fitter."""

from __future__ import annotations

from torch import Tensor

__all__ = ["geman_mcclure"]


def geman_mcclure(x: Tensor, sigma: float = 100.0) -> Tensor:
    """Geman-McClure ``rho(x) = s^2 x^2 / (s^2 + x^2)`` (SMPLify; dense refinement eq. 7),
    elementwise: ``x`` a residual (e.g. a 2D distance in pixels), ``s = sigma`` its scale.

    ``rho`` is ``x^2`` for ``|x| << s`` and saturates at ``s^2``, so outliers pull at most
    ``s^2``; it is even, zero only at 0 and smooth (gradient ``2 s^4 x / (s^2 + x^2)^2``).
    """
    x2 = x * x
    s2 = float(sigma) ** 2
    return s2 * x2 / (s2 + x2)
