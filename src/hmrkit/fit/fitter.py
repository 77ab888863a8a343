"""The batched SMPLify-style fitter (SMPLify; dense refinement paper eq. 4 and 7).

Minimises, per person, over the pose (local joint rotations, root included), the shape and the
full-image camera translation::

    E = w_kp E_keypoints + w_dense E_dense + w_3d E_3d
        + w_pose E_pose_prior + w_limits E_joint_limits + w_shape ||beta||^2

with the data terms of :mod:`hmrkit.fit.terms` and the priors of :mod:`hmrkit.fit.priors`
(the paper drops SMPLify's bending and camera-depth terms; so does this fitter), through a
full-image perspective camera (:class:`hmrkit.geometry.cameras.Camera`: a known focal, or
``sqrt(W^2 + H^2)``), with Adam.

Parameters: rotations as 6D (Zhou et al.; default) or axis-angle, mapped to matrices; the
shape coefficients; the translation as ``(t_x / t_z, t_y / t_z, log t_z)`` (scale-free steps,
the body never crosses the camera plane). Stages (:class:`FitConfig`): an optional
camera-first stage (translation and root orientation, SPIN's first stage), then the body.

Robustness: a person whose initial estimate, camera or box is not usable, or who has no
target with a positive confidence, is left unchanged and :attr:`FitResult.status` says why;
target points that are not finite are ignored; a person whose loss becomes non-finite during
the fit keeps its last finite parameters and stops there (and says so). The fit stops early
when every person's loss has stopped changing (``tol``, ``patience``).

Everything is batched: persons are independent (each has its own parameters and loss), the
batch only shares the arithmetic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hmrkit.body.model import BodyModel, shape, skin
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.rotations import (
    axis_angle_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_sixd,
    sixd_to_rotmat,
)

from .priors import PosePrior, shape_prior
from .terms import KEYPOINT_ROOTS, Targets, keypoint_3d_term, reprojection_term

__all__ = ["FitConfig", "FitResult", "Fitter", "STATUS_OK"]

STATUS_OK = "ok"
TERMS = ("keypoints", "dense", "keypoints3d", "pose_prior", "joint_limits", "shape")


@dataclass
class FitConfig:
    """Settings of :class:`Fitter` (defaults: SMPLify / SPIN where they apply)."""

    iterations: int = 100
    """Adam iterations of the body stage (the paper: 100)."""
    camera_iterations: int = 0
    """Iterations of a first stage fitting only the translation and the root orientation
    (SPIN's camera stage); 0: no such stage."""
    lr: float = 0.01
    """Adam learning rate (SPIN: 1e-2)."""
    schedule: str = "constant"
    """Learning rate over a stage: ``"constant"`` (SPIN) or ``"cosine"`` (down to 1 % of
    ``lr`` at the stage's last iteration; converges to tighter tolerances)."""
    rotation: str = "6d"
    """Rotation parameters: ``"6d"`` or ``"axis_angle"``."""
    optimize_betas: bool = True
    """Fit the shape (else keep the initial one)."""
    sigma: float = 100.0
    """Geman-McClure scale of 2D residuals, in reference pixels (SPIN: 100)."""
    sigma_3d_cm: float = 20.0
    """Geman-McClure scale of 3D residuals, centimetres."""
    reference_size: float = 224.0
    """Person size (pixels) at which reference pixels are image pixels (SPIN's crop)."""
    keypoints_weight: float = 1.0
    """Weight of the sparse 2D keypoint term."""
    dense_weight: float = 1.0
    """Weight of the dense per-vertex 2D term."""
    keypoints3d_weight: float = 1.0
    """Weight of the root-aligned 3D keypoint term."""
    pose_prior_weight: float = 0.1
    """Weight of the pose mixture's energy."""
    joint_limits_weight: float = 100.0
    """Weight of the joint-limit energy (squared radians)."""
    shape_weight: float = 0.5
    """Weight of ``||beta||^2``."""
    tol: float = 1e-5
    """Early exit: every person's loss changes by less than ``tol (|loss| + 1)`` ..."""
    patience: int = 5
    """... for this many iterations in a row."""
    compile: bool = False
    """``torch.compile`` the loss (body, data terms and priors, forward and backward): about
    twice as fast per iteration on CPU, for a one-off compilation per process (about 1.5 min
    on a 2-core machine with a cold cache, some seconds with a warm one; needs a C++
    compiler). For fitting many batches in one process; off by default."""

    def __post_init__(self):
        if self.rotation not in ("6d", "axis_angle"):
            raise ValueError(f"FitConfig: rotation must be '6d' or 'axis_angle', got "
                             f"{self.rotation!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"FitConfig: schedule must be 'constant' or 'cosine', got "
                             f"{self.schedule!r}")
        if self.iterations < 0 or self.camera_iterations < 0:
            raise ValueError("FitConfig: iterations must be >= 0")

    def weight(self, term: str) -> float:
        return {"keypoints": self.keypoints_weight, "dense": self.dense_weight,
                "keypoints3d": self.keypoints3d_weight, "pose_prior": self.pose_prior_weight,
                "joint_limits": self.joint_limits_weight, "shape": self.shape_weight}[term]


@dataclass
class FitResult:
    """The fitted parameters (batch ``B``) and what the fit did."""

    rotmat: Tensor
    """(B, J, 3, 3) local rotations (joint 0: root orientation in the camera frame)."""
    betas: Tensor
    """(B, K) shape coefficients."""
    transl: Tensor
    """(B, 3) translation into the full-image camera frame."""
    vertices: Tensor
    """(B, V, 3) posed vertices without the translation."""
    joints: Tensor
    """(B, J, 3) posed joints without the translation."""
    losses: dict[str, Tensor]
    """Term name -> (B,) weighted value at the end (0 for persons left unchanged)."""
    initial_losses: dict[str, Tensor]
    """Term name -> (B,) weighted value at the start."""
    status: list[str]
    """Per person: ``"ok"``, or why the estimate was left unchanged / where it stopped."""
    iterations: int
    """Iterations run (all stages; fewer than asked after an early exit)."""
    seconds: float
    """Wall time of the fit."""
    history: list[float] = field(default_factory=list)
    """Sum over persons of the total loss, per iteration."""

    @property
    def changed(self) -> Tensor:
        """(B,) bool: the person was fitted (its status is ``"ok"`` or a stop after some
        progress)."""
        return torch.tensor([not s.startswith("unchanged") for s in self.status])

    def total(self) -> Tensor:
        """(B,) the final total loss."""
        return sum(self.losses.values())


class _Posing:
    """The body evaluated on the vertices the data terms need only (all of them for a dense
    term; the regressors' support for keypoint terms)."""

    def __init__(self, body: BodyModel, sets: tuple[str, ...], dense: bool):
        self.body = body
        J, V = body.num_joints, body.num_vertices
        own = ("joints", "smpl24", "vertices")
        dense = dense or "vertices" in sets
        regs = {n: getattr(body, f"_kp_{n}") for n in sets if n not in own}
        for n in sets:
            if n not in own and n not in body.keypoint_sets:
                raise KeyError(f"{body.name}: unknown keypoint set '{n}'; this model has "
                               f"{list(body.keypoint_sets)}")
        if dense:
            idx = torch.arange(V, device=body.v_template.device)
        else:
            used = torch.zeros(V, dtype=torch.bool, device=body.v_template.device)
            for reg in regs.values():
                used |= (reg[:, J:] != 0).any(0)
            idx = torch.nonzero(used)[:, 0]
        self.idx = idx
        self.regs = {n: (r[:, :J], r[:, J:][:, idx]) for n, r in regs.items()}
        self.v_template = body.v_template[idx]
        self.shapedirs = body.shapedirs[idx]
        self.lbs_weights = body.lbs_weights[idx]
        self.posedirs = None if body.posedirs is None else body.posedirs[:, idx]

    def __call__(self, rotmat: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """Vertices ``(B, len(idx), 3)`` and joints ``(B, J, 3)``, without translation."""
        b = self.body
        v, j = shape(betas, self.v_template, self.shapedirs, b.joint_template,
                     b.joint_shapedirs)
        return skin(v, j, rotmat, b.parents, self.lbs_weights, self.posedirs)

    def keypoints(self, name: str, vertices: Tensor, joints: Tensor) -> Tensor:
        if name in ("joints", "smpl24"):
            return joints
        if name == "vertices":
            return vertices
        rj, rv = self.regs[name]
        return (torch.einsum("kj,bjd->bkd", rj, joints)
                + torch.einsum("kv,bvd->bkd", rv, vertices))


class Fitter:
    """Batched SMPLify-style fitting of a body model to 2D / 3D targets (module doc).

    >>> fitter = Fitter(body)                       # FitConfig() defaults, shipped prior
    >>> result = fitter.fit(rotmat, betas, transl, camera,
    ...                     Targets(keypoints2d={"blazepose33": landmarks}))
    >>> result.rotmat, result.betas, result.transl, result.losses, result.status
    """

    def __init__(self, body: BodyModel, config: FitConfig | None = None,
                 prior: PosePrior | None = None):
        self.body = body
        self.config = config or FitConfig()
        self.prior = (prior or PosePrior.for_body(body)).to(body.v_template)
        self._loss = torch.compile(self._terms) if self.config.compile else self._terms

    # ------------------------------------------------------------------ checks
    def _person_size(self, targets: Targets, vertices: Tensor, camera: Camera) -> Tensor:
        if targets.person_size is not None:
            return targets.person_size.to(vertices).reshape(-1)
        px = camera.project(vertices)
        finite = torch.isfinite(px).all(-1, keepdim=True)
        lo = torch.where(finite, px, math.inf).amin(1)
        hi = torch.where(finite, px, -math.inf).amax(1)
        return 1.2 * (hi - lo).amax(-1)

    def _initial_status(self, rotmat, betas, transl, camera, targets, size) -> list[str]:
        B = rotmat.shape[0]
        finite = (torch.isfinite(rotmat).flatten(1).all(1) & torch.isfinite(betas).all(1)
                  & torch.isfinite(transl).all(1))
        cam_ok = torch.isfinite(camera.intrinsics).all(1) & (camera.focal > 0)
        weight = targets.weight_sum(B, transl)
        status = []
        for b in range(B):
            if not finite[b]:
                status.append("unchanged: the initial estimate is not finite")
            elif not cam_ok[b]:
                status.append("unchanged: the camera is not usable (focal <= 0 or not finite)")
            elif not transl[b, 2] > 0:
                status.append("unchanged: the initial estimate is behind the camera (t_z <= 0)")
            elif not (torch.isfinite(size[b]) and size[b] > 2):
                status.append(f"unchanged: degenerate box (person size {float(size[b]):.3g} px)")
            elif not weight[b] > 0:
                status.append("unchanged: no target point with a positive confidence "
                              "(e.g. no visible keypoint)")
            else:
                status.append(STATUS_OK)
        return status

    # ------------------------------------------------------------------ parameters
    def _rotations(self, p: Tensor) -> Tensor:
        return sixd_to_rotmat(p) if self.config.rotation == "6d" else axis_angle_to_rotmat(p)

    def _to_params(self, rotmat: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        rot = rotmat_to_sixd(rotmat) if self.config.rotation == "6d" else \
            rotmat_to_axis_angle(rotmat)
        tz = transl[:, 2:].clamp_min(1e-6)
        return rot, torch.cat([transl[:, :2] / tz, torch.log(tz)], 1)

    @staticmethod
    def _transl(cam: Tensor) -> Tensor:
        tz = torch.exp(cam[:, 2:])
        return torch.cat([cam[:, :2] * tz, tz], 1)

    # ------------------------------------------------------------------ loss
    def _terms(self, posing: _Posing, rot, betas, cam, camera, targets, scale) -> dict:
        cfg = self.config
        rotmat = self._rotations(rot)
        vertices, joints = posing(rotmat, betas)
        transl = self._transl(cam)
        out = {}
        if targets.keypoints2d:
            parts = []
            for name, kp in targets.keypoints2d.items():
                pts = posing.keypoints(name, vertices, joints)
                parts.append((camera.project(pts, transl), kp))
            proj = torch.cat([p for p, _ in parts], 1)
            kp = torch.cat([k for _, k in parts], 1)
            out["keypoints"] = reprojection_term(proj, kp[..., :2], kp[..., 2], scale, cfg.sigma)
        if targets.vertices2d is not None:
            proj = camera.project(vertices, transl)
            out["dense"] = reprojection_term(proj, targets.vertices2d, targets.vertex_weights,
                                             scale, cfg.sigma)
        if targets.keypoints3d:
            terms = [keypoint_3d_term(posing.keypoints(n, vertices, joints), kp,
                                      KEYPOINT_ROOTS.get(n, (0,)), cfg.sigma_3d_cm)
                     for n, kp in targets.keypoints3d.items()]
            out["keypoints3d"] = sum(terms) / len(terms)
        out["pose_prior"], out["joint_limits"] = self.prior.energies(rotmat)
        out["shape"] = shape_prior(betas)
        return {k: cfg.weight(k) * v for k, v in out.items()}

    # ------------------------------------------------------------------ fit
    def fit(self, rotmat: Tensor, betas: Tensor, transl: Tensor, camera: Camera,
            targets: Targets) -> FitResult:
        """Fit ``B`` persons from ``rotmat (B, J, 3, 3)``, ``betas (B, k)``, ``transl (B, 3)``
        (full-image camera frame) to ``targets`` seen by ``camera`` (batch ``B``)."""
        start = time.perf_counter()
        body, cfg = self.body, self.config
        like = body.v_template
        B, K = rotmat.shape[0], body.num_betas
        rotmat, transl = rotmat.detach().to(like), transl.detach().to(like)
        betas = betas.detach().to(like)
        betas = torch.cat([betas, betas.new_zeros(B, max(K - betas.shape[1], 0))], 1)[:, :K]
        camera = camera.to(like)
        targets, _ = targets.to(like).sanitized()
        with torch.no_grad():
            safe = torch.nan_to_num(rotmat)
            first = body(safe[:, 0], safe[:, 1:], torch.nan_to_num(betas))
            size = self._person_size(targets, first.vertices + torch.nan_to_num(transl)[:, None],
                                     camera)
        status = self._initial_status(rotmat, betas, transl, camera, targets, size)
        unchanged = torch.tensor([s != STATUS_OK for s in status], device=like.device)
        active = ~unchanged
        scale = cfg.reference_size / torch.where(active, size, 1.0)

        def rows(mask: Tensor, x: Tensor) -> Tensor:  # (B,) mask broadcast against x
            return mask.reshape(-1, *([1] * (x.dim() - 1)))

        eye = torch.eye(3, dtype=like.dtype, device=like.device)
        rot0, cam0 = self._to_params(torch.where(rows(active, rotmat), rotmat, eye),
                                     torch.where(rows(active, transl), transl,
                                                 transl.new_tensor([0.0, 0.0, 1.0])))
        params = {"rot": rot0.clone().requires_grad_(True),
                  "betas": torch.where(rows(active, betas), betas, 0.0).requires_grad_(
                      cfg.optimize_betas),
                  "cam": cam0.clone().requires_grad_(True)}
        last_good = {k: v.detach().clone() for k, v in params.items()}
        posing = _Posing(body, tuple(targets.keypoints2d) + tuple(targets.keypoints3d),
                         targets.vertices2d is not None)

        def evaluate(step: bool = False) -> dict[str, Tensor]:
            # only the optimisation step runs compiled (one graph to compile, not two)
            loss = self._loss if step else self._terms
            return loss(posing, params["rot"], params["betas"], params["cam"], camera, targets,
                        scale)

        with torch.no_grad():
            initial = evaluate()
        history: list[float] = []
        iterations = 0
        stages = [(name, n) for name, n in (("camera", cfg.camera_iterations),
                                            ("body", cfg.iterations)) if n]
        for stage, count in stages:
            names = ["rot", "cam"] + (["betas"] if cfg.optimize_betas and stage == "body" else [])
            # the fused step (one kernel for all parameters) where torch has it: CPU and CUDA
            fused = like.device.type in ("cpu", "cuda")
            optimizer = torch.optim.Adam([params[n] for n in names], lr=cfg.lr, fused=fused)
            previous, calm = None, 0
            for step in range(count):
                if cfg.schedule == "cosine":
                    f = 0.5 * (1 + math.cos(math.pi * step / max(count - 1, 1)))
                    optimizer.param_groups[0]["lr"] = cfg.lr * (0.01 + 0.99 * f)
                current = {k: v.detach().clone() for k, v in params.items()}
                optimizer.zero_grad(set_to_none=False)
                with torch.enable_grad():
                    terms = evaluate(step=True)
                    if stage == "camera":  # the data terms alone
                        terms = {k: v for k, v in terms.items()
                                 if k in ("keypoints", "dense", "keypoints3d")}
                    loss = sum(terms.values())
                    finite = torch.isfinite(loss)
                    torch.where(finite & active, loss, 0.0).sum().backward()
                for n in names:
                    grad = params[n].grad
                    if grad is None:  # a parameter no term depends on
                        continue
                    torch.nan_to_num_(grad, 0.0, 0.0, 0.0)
                    if stage == "camera" and n == "rot":
                        grad[:, 1:] = 0.0  # only the root orientation moves
                optimizer.step()
                iterations += 1
                with torch.no_grad():
                    params_ok = torch.isfinite(torch.cat(
                        [p.flatten(1) for p in params.values()], 1)).all(1)
                    if bool((finite & params_ok)[active].all()):
                        # the usual case: the loss was finite at `current` for every active
                        # person (inactive ones were held at `last_good`, so equal it there)
                        last_good = current
                    else:
                        ok = finite & active
                        for k in params:
                            last_good[k] = torch.where(rows(ok, current[k]), current[k],
                                                       last_good[k])
                        for b in torch.nonzero(active & ~finite)[:, 0].tolist():
                            status[b] = (f"stopped: non-finite loss at iteration {iterations}; "
                                         "kept the last finite parameters")
                        active = active & finite
                        for b in torch.nonzero(active & ~params_ok)[:, 0].tolist():
                            status[b] = (f"stopped: non-finite parameters at iteration "
                                         f"{iterations}; kept the last finite ones")
                        active = active & params_ok
                    if not bool(active.all()):  # hold the stopped and unchanged persons
                        for k, p in params.items():
                            p.copy_(torch.where(rows(active, p), p, last_good[k]))
                    value = torch.where(active, loss.detach(), 0.0)
                    history.append(float(value.sum()))
                    if previous is not None and active.any():
                        change = (previous - value).abs() / (previous.abs() + 1.0)
                        calm = calm + 1 if bool((change[active] < cfg.tol).all()) else 0
                    previous = value
                if calm >= cfg.patience or not active.any():
                    break
        with torch.no_grad():
            final = evaluate()
            out_rot = torch.where(rows(unchanged, rotmat), rotmat,
                                  self._rotations(params["rot"]))
            out_betas = torch.where(rows(unchanged, betas), betas, params["betas"])
            out_transl = torch.where(rows(unchanged, transl), transl,
                                     self._transl(params["cam"]))
            posed = body(out_rot[:, 0], out_rot[:, 1:], out_betas)
            nan = torch.tensor(float("nan"), dtype=like.dtype, device=like.device)
            losses = {k: torch.where(unchanged, nan, v) for k, v in final.items()}
            initial = {k: torch.where(unchanged, nan, v) for k, v in initial.items()}
        return FitResult(rotmat=out_rot, betas=out_betas, transl=out_transl,
                         vertices=posed.vertices, joints=posed.joints, losses=losses,
                         initial_losses=initial, status=status, iterations=iterations,
                         seconds=time.perf_counter() - start, history=history)
