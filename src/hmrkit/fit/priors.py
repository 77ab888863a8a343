"""Priors of the fitter: shape, a learned pose prior, anatomical joint limits.

- :func:`shape_prior`: ``||beta||^2`` (SMPLify; Anny-24's shape space is whitened, so this is
  the Gaussian negative log-likelihood up to a constant).
- :class:`PosePrior`: a Gaussian mixture over the body pose (SMPLify's prior, in kind) and
  anatomical joint limits, from one shipped file (:data:`POSE_PRIOR_FILE`).

The SMPLify / SPIN mixture is licensed with SMPL and trained on gated motion capture, so hmrkit
learns its own: ``scripts/make_pose_prior.py`` fits a mixture by EM (:func:`fit_gmm`) to poses
drawn from hmrkit's synthetic pose distribution and stores it with the joint limits of that
distribution (the anatomical frames and angle ranges of ``hmrkit.data.synthetic.poses``), so
that the fitter needs nothing from the synthetic engine. The file's header says what it was
fitted on and how it was validated.

Feature of the mixture: the rotation vectors of the 23 body joints (69 numbers; the root is
free), relative to Anny-24's A-pose rest. SMPL poses (T-pose rest) are moved to that rest first
(``R_a[k] = W[parent(k)] R_t[k] W[k]^T``, the rest offsets stored in the file), so one prior
serves both body models.

Energies (both >= 0, per person):

- mixture: SMPLify's max-mixture approximation of the negative log-likelihood,
  ``E(x) = min_k [0.5 (x - mu_k)^T S_k^-1 (x - mu_k) + c_k] - min_k c_k`` with
  ``c_k = -log w_k + 0.5 log det S_k``: zero at the mean of the most probable component;
- limits: the squared violation in radians summed over joints and angles. Box joints: the
  joint's written angles ``(x, y, z)`` (intrinsic X-Z-Y Euler angles in its anatomical frame,
  right-side joints mirrored) outside ``[lo, hi]``; shoulders: the upper arm's angle to the
  cone axis beyond the cone, and the twist about the bone outside its range (swing-twist).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hmrkit.geometry.rotations import rotmat_to_axis_angle
from hmrkit.io import load_npz_with_header

__all__ = ["POSE_PRIOR_FILE", "PosePrior", "fit_gmm", "gmm_log_likelihood", "shape_prior"]

POSE_PRIOR_FILE = Path(__file__).resolve().parent / "data" / "pose_prior_anny24.npz"
"""The shipped pose prior (mixture and joint limits), written by ``scripts/make_pose_prior.py``."""
PRIOR_FORMAT = "hmrkit-pose-prior"

_ARRAYS = ("weights", "means", "covariances", "joint_frames", "side_sign", "box", "box_joints",
           "shoulder_joints", "shoulder_rest_dir", "shoulder_cone_axis", "shoulder_sign",
           "shoulder_cone_deg", "shoulder_twist_deg", "rest_offsets", "parents")


def shape_prior(betas: Tensor) -> Tensor:
    """(B,) ``||beta||^2``."""
    return (betas * betas).sum(-1)


# --------------------------------------------------------------------------- the mixture
def _gaussian_terms(x: Tensor, means: Tensor, covariances: Tensor) -> tuple[Tensor, Tensor]:
    """Mahalanobis distances ``(N, C)`` of ``x (N, D)`` to each component and ``log det``
    ``(C,)`` of the covariances."""
    L = torch.linalg.cholesky(covariances)  # (C, D, D)
    diff = (x[None] - means[:, None]).transpose(1, 2)  # (C, D, N)
    sol = torch.linalg.solve_triangular(L, diff, upper=False)
    maha = (sol * sol).sum(1).T  # (N, C)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return maha, logdet


def gmm_log_likelihood(x: Tensor, weights: Tensor, means: Tensor, covariances: Tensor) -> Tensor:
    """(N,) exact log-density of ``x (N, D)`` under the mixture."""
    maha, logdet = _gaussian_terms(x, means, covariances)
    D = x.shape[1]
    logp = torch.log(weights) - 0.5 * (maha + logdet + D * math.log(2 * math.pi))
    return torch.logsumexp(logp, dim=1)


def fit_gmm(x: Tensor, components: int = 8, iterations: int = 200, seed: int = 0,
            reg: float = 1e-4, tol: float = 1e-7) -> dict[str, Tensor]:
    """Full-covariance Gaussian mixture fitted to ``x (N, D)`` by EM (float64).

    Initialised by k-means++ seeding and 10 k-means steps; ``reg`` is added to every
    covariance's diagonal; stops when the mean log-likelihood gains less than ``tol``.
    Returns ``weights (C,)``, ``means (C, D)``, ``covariances (C, D, D)``, ``log_likelihood``
    (mean per sample, per iteration).
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    N, D = x.shape
    g = torch.Generator().manual_seed(seed)
    centres = [x[torch.randint(N, (1,), generator=g)].squeeze(0)]
    for _ in range(components - 1):  # k-means++
        d2 = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
        centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    means = torch.stack(centres)
    for _ in range(10):  # k-means
        label = torch.cdist(x, means).argmin(1)
        for k in range(components):
            if (label == k).any():
                means[k] = x[label == k].mean(0)
    label = torch.cdist(x, means).argmin(1)
    resp = torch.nn.functional.one_hot(label, components).to(x)
    history = []
    eye = torch.eye(D, dtype=x.dtype)
    for _ in range(iterations):
        nk = resp.sum(0) + 1e-10
        weights = nk / N
        means = (resp.T @ x) / nk[:, None]
        diff = x[None] - means[:, None]  # (C, N, D)
        covariances = torch.einsum("cn,cnd,cne->cde", resp.T, diff, diff) / nk[:, None, None]
        covariances = covariances + reg * eye
        maha, logdet = _gaussian_terms(x, means, covariances)
        logp = torch.log(weights) - 0.5 * (maha + logdet + D * math.log(2 * math.pi))
        ll = torch.logsumexp(logp, dim=1)
        resp = torch.exp(logp - ll[:, None])
        history.append(float(ll.mean()))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
    return {"weights": weights, "means": means, "covariances": covariances,
            "log_likelihood": torch.tensor(history)}


# --------------------------------------------------------------------------- the prior
class PosePrior(nn.Module):
    """The learned pose mixture and the joint limits of one prior file (module doc).

    ``rest``: the rest pose of the body model whose rotations are given, ``"a_pose"``
    (Anny-24) or ``"t_pose"`` (SMPL); see :meth:`for_body`.
    """

    def __init__(self, arrays: dict[str, np.ndarray], header: dict, rest: str = "a_pose"):
        super().__init__()
        if rest not in ("a_pose", "t_pose"):
            raise ValueError(f"PosePrior: rest must be 'a_pose' or 't_pose', got {rest!r}")
        self.header = header
        self.rest = rest
        for key in _ARRAYS:
            value = torch.as_tensor(np.asarray(arrays[key]))
            if value.is_floating_point():
                value = value.to(torch.float64)
            self.register_buffer(key, value, persistent=False)
        c = -torch.log(self.weights) + 0.5 * torch.logdet(self.covariances)
        self.register_buffer("constants", c - c.min(), persistent=False)
        # whitening: with S_k = L_k L_k^T, (x - mu_k)^T S_k^-1 (x - mu_k) is
        # |L_k^-1 x - L_k^-1 mu_k|^2; all the L_k^-1 side by side make the C forms one product
        C, D = self.means.shape
        inv_l = torch.linalg.inv(torch.linalg.cholesky(self.covariances))  # (C, D, D)
        self.register_buffer("whitening", inv_l.reshape(C * D, D).T.contiguous(), persistent=False)
        self.register_buffer("whitened_means", (inv_l @ self.means[..., None]).reshape(C * D),
                             persistent=False)
        self._register_limit_maps()

    @classmethod
    def load(cls, path: str | Path | None = None, rest: str = "a_pose") -> PosePrior:
        """The prior of ``path`` (default: the shipped :data:`POSE_PRIOR_FILE`)."""
        arrays, header = _read(str(path or POSE_PRIOR_FILE))
        return cls(arrays, header, rest)

    @classmethod
    def for_body(cls, body, path: str | Path | None = None) -> PosePrior:
        """The prior for a :class:`~hmrkit.body.model.BodyModel` (SMPL: T-pose rest), on its
        device and dtype."""
        rest = "t_pose" if body.name.startswith("smpl") else "a_pose"
        return cls.load(path, rest).to(body.v_template)

    def _to_a_pose(self, rotmat: Tensor) -> Tensor:
        if self.rest == "a_pose":
            return rotmat
        W = self.rest_offsets.to(rotmat)
        Wp = torch.cat([torch.eye(3, dtype=W.dtype, device=W.device)[None],
                        W[self.parents[1:]]])
        return Wp @ rotmat @ W.transpose(-1, -2)

    # ------------------------------------------------------------------ mixture
    def features(self, rotmat: Tensor) -> Tensor:
        """(B, 69) rotation vectors of the body joints 1-23 of poses ``(B, 24, 3, 3)``."""
        return self._rotvecs(self._to_a_pose(rotmat)).flatten(1)

    @staticmethod
    def _rotvecs(R: Tensor) -> Tensor:
        """(B, 23, 3) rotation vectors of the body joints of A-pose-rest rotations ``R``."""
        return rotmat_to_axis_angle(R[:, 1:])

    def mixture_energy(self, rotmat: Tensor) -> Tensor:
        """(B,) max-mixture negative log-likelihood of poses ``(B, 24, 3, 3)``, >= 0."""
        return self._mixture(self.features(rotmat))

    def _mixture(self, x: Tensor) -> Tensor:
        y = x @ self.whitening.to(x) - self.whitened_means.to(x)  # (B, C D)
        maha = y.square().unflatten(1, self.means.shape).sum(-1)  # (B, C)
        return (0.5 * maha + self.constants.to(x)).min(dim=1).values

    def energies(self, rotmat: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) :meth:`mixture_energy` and (B,) :meth:`limit_energy` of poses ``(B, 24, 3, 3)``
        with one logarithm map for both (what the fitter calls every iteration)."""
        R, r = self._rotations_and_rotvecs(rotmat)
        return self._mixture(r.flatten(1)), self._limit_energy(*self._violations(R, r))

    # ------------------------------------------------------------------ limits
    def _register_limit_maps(self) -> None:
        """Constants that turn every limit's angle into one product with the flattened body
        rotations ``R_k`` (k = 1..23, row-major, A-pose rest).

        ``limit_map (23, 9, 6)``: columns 0-4 give the entries ``E01, E21, E11, E02, E00`` of
        ``E_k = F_k^T R_k F_k`` (``F_k``: the joint's anatomical frame), whose intrinsic X-Z-Y
        Euler angles are the written ones (``E = Rx(x) Rz(z) Ry(y)``: ``z = asin(-E01)``,
        ``x = atan2(E21, E11)``, ``y = atan2(E02, E00)``, the principal solution); column 5 gives,
        for the shoulders, ``c^T R_k u`` (cone axis ``c``, rest bone ``u``: the cosine of the
        cone angle). ``limit_low / limit_high (23, 3)``: the box of each box joint, +-inf
        elsewhere (no violation)."""
        F = self.joint_frames[1:]  # (23, 3, 3)
        pairs = ((0, 1), (2, 1), (1, 1), (0, 2), (0, 0))
        cols = [(F[:, :, a, None] * F[:, None, :, b]).flatten(1) for a, b in pairs]
        cone = torch.zeros_like(cols[0])
        k = self.shoulder_joints - 1
        cone[k] = (self.shoulder_cone_axis[:, :, None] * self.shoulder_rest_dir[:, None, :]
                   ).flatten(1)
        self.register_buffer("limit_map", torch.stack(cols + [cone], -1), persistent=False)
        low = torch.full((23, 3), -math.inf, dtype=F.dtype)
        high = torch.full((23, 3), math.inf, dtype=F.dtype)
        low[self.box_joints - 1] = self.box[self.box_joints, :, 0].to(F.dtype)
        high[self.box_joints - 1] = self.box[self.box_joints, :, 1].to(F.dtype)
        self.register_buffer("limit_low", low, persistent=False)
        self.register_buffer("limit_high", high, persistent=False)

    def _violations(self, R: Tensor, rotvecs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-angle violations in degrees of A-pose-rest rotations ``R (B, 24, 3, 3)`` with
        the body joints' rotation vectors ``(B, 23, 3)``: box angles ``(B, 23, 3)`` (0 for the
        joints without a box), shoulder cone and twist ``(B, 2)`` each.

        Shoulder twist (swing-twist about the rest bone ``u``): ``2 atan2(q_xyz . u, q_w)`` of
        the unit quaternion, here ``q_xyz = sin(theta / 2) / theta r``, ``q_w = cos(theta / 2)``.
        """
        e = torch.einsum("bnk,nkm->bnm", R[:, 1:].flatten(-2), self.limit_map.to(R))
        e01, e21, e11, e02, e00, cone_cos = e.unbind(-1)
        z = torch.asin(torch.clamp(-e01, -1 + 1e-7, 1 - 1e-7))
        angles = torch.rad2deg(torch.stack([torch.atan2(e21, e11), torch.atan2(e02, e00), z], -1))
        angles = angles * self.side_sign[1:].to(R)
        over = (torch.relu(self.limit_low.to(R) - angles)
                + torch.relu(angles - self.limit_high.to(R)))
        k = self.shoulder_joints - 1
        cos = cone_cos[:, k]
        cone = torch.rad2deg(torch.acos(torch.clamp(cos, -1 + 1e-7, 1 - 1e-7)))
        r = rotvecs[:, k]
        theta = torch.sqrt((r * r).sum(-1).clamp_min(1e-20))
        half_sinc = 0.5 * torch.sinc(theta / (2 * math.pi))  # sin(theta / 2) / theta
        u = self.shoulder_rest_dir.to(R)
        twist = 2 * torch.atan2(half_sinc * (r * u).sum(-1), torch.cos(0.5 * theta))
        twist = torch.rad2deg(torch.remainder(twist + math.pi, 2 * math.pi) - math.pi)
        twist = twist * self.shoulder_sign.to(R)
        lo, hi = self.shoulder_twist_deg.to(R)
        return (over, torch.relu(cone - self.shoulder_cone_deg.to(R)),
                torch.relu(lo - twist) + torch.relu(twist - hi))

    def _rotations_and_rotvecs(self, rotmat: Tensor) -> tuple[Tensor, Tensor]:
        R = self._to_a_pose(rotmat)
        return R, self._rotvecs(R)

    def limit_violation(self, rotmat: Tensor) -> Tensor:
        """(B, 24) how far (degrees) each joint lies outside its limits (0 inside; the root is
        not limited): the same numbers as ``hmrkit.data.synthetic.poses.limit_violation``."""
        box, cone, twist = self._violations(*self._rotations_and_rotvecs(rotmat))
        out = rotmat.new_zeros(rotmat.shape[:2])
        out[:, 1:] = box.max(-1).values
        out[:, self.shoulder_joints] = torch.maximum(cone, twist)
        return out

    def limit_energy(self, rotmat: Tensor) -> Tensor:
        """(B,) squared violations in radians, summed over the joints' angles."""
        return self._limit_energy(*self._violations(*self._rotations_and_rotvecs(rotmat)))

    @staticmethod
    def _limit_energy(box: Tensor, cone: Tensor, twist: Tensor) -> Tensor:
        rad = math.pi / 180
        return (rad * box).pow(2).sum((1, 2)) + (rad * cone).pow(2).sum(1) + (
            rad * twist).pow(2).sum(1)


@lru_cache(maxsize=4)
def _read(path: str) -> tuple[dict[str, np.ndarray], dict]:
    arrays, header = load_npz_with_header(path, "hmrkit pose prior")
    if header.get("format") != PRIOR_FORMAT:
        raise ValueError(f"{path}: not an hmrkit pose prior (format {header.get('format')!r})")
    missing = [k for k in _ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}")
    if (np.asarray(arrays["box_joints"]) == 0).any() or (
            np.asarray(arrays["shoulder_joints"]) == 0).any():
        raise ValueError(f"{path}: joint limits on the root (joint 0); only joints 1-23 have them")
    return arrays, header
