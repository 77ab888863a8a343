"""Make the fitter's pose prior: a Gaussian mixture over hmrkit's synthetic pose distribution,
with that distribution's joint limits, in one file (``hmrkit.fit.priors``).

    python scripts/make_pose_prior.py --out src/hmrkit/fit/data/pose_prior_anny24.npz

Poses come from ``hmrkit.data.synthetic.poses.PoseSampler`` with its defaults (the
distribution the synthetic scenes draw from): ``--train`` poses (seed ``--seed``) to fit,
``--heldout`` poses of another seed to validate. Fitting: EM (``hmrkit.fit.priors.fit_gmm``)
on the 69 rotation-vector numbers of the 23 body joints. Validation, written into the file's
header and printed:

- mean log-likelihood per pose on the training and the held-out poses, for the mixture and
  for one Gaussian (a mixture that fits only its training poses would drop on held-out ones);
- the energy of held-out poses against corrupted ones (every joint turned by a random
  rotation of ``--corrupt-deg`` degrees about a random axis): the share of corrupted poses
  above the 95th percentile of the held-out energies, and the share within the limits;
- the shipped limits: every held-out pose within them (the sampler clamps to them), and the
  torch limit check against the sampler's own on the held-out poses.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from hmrkit.data.synthetic import poses as P
from hmrkit.fit.priors import PRIOR_FORMAT, PosePrior, fit_gmm, gmm_log_likelihood
from hmrkit.io import save_npz_with_header


def limit_arrays() -> dict[str, np.ndarray]:
    """The joint limits of the synthetic pose distribution as plain arrays."""
    shoulders = np.array(P._SHOULDERS)
    frames = [P._shoulder_frame(int(k)) for k in shoulders]
    return {
        "joint_frames": P.JOINT_FRAMES, "side_sign": P.SIDE_SIGN, "box": P._BOX,
        "box_joints": P._BOX_JOINTS.astype(np.int64), "shoulder_joints": shoulders,
        "shoulder_rest_dir": np.stack([f[0] for f in frames]),
        "shoulder_cone_axis": np.stack([f[1] for f in frames]),
        "shoulder_sign": np.array([f[2] for f in frames]),
        "shoulder_cone_deg": np.array(P.SHOULDER_LIMIT.cone_deg),
        "shoulder_twist_deg": np.array(P.SHOULDER_LIMIT.twist_deg),
        "rest_offsets": P.REST_OFFSETS, "parents": P.PARENTS.astype(np.int64),
    }


def corrupt(poses: np.ndarray, degrees: float, seed: int) -> np.ndarray:
    """Every body joint turned by ``degrees`` about a random axis."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(*poses.shape[:2], 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    turn = P._expmap(axis * np.deg2rad(degrees))
    out = poses @ turn
    out[:, 0] = poses[:, 0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=30000)
    parser.add_argument("--heldout", type=int, default=10000)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--reg", type=float, default=1e-4, help="covariance diagonal (rad^2)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--corrupt-deg", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    args = parser.parse_args(argv)

    t0 = time.time()
    train = P.PoseSampler(seed=args.seed).sample_numpy(args.train)
    held = P.PoseSampler(seed=args.seed + 1).sample_numpy(args.heldout)
    limits = limit_arrays()
    header0 = {"format": PRIOR_FORMAT}
    probe = PosePrior({**limits, "weights": np.ones(1), "means": np.zeros((1, 69)),
                       "covariances": np.eye(69)[None]}, header0)
    x_train = probe.features(torch.from_numpy(train))
    x_held = probe.features(torch.from_numpy(held))
    print(f"sampled {len(train)} + {len(held)} poses in {time.time() - t0:.0f} s")

    t0 = time.time()
    gmm = fit_gmm(x_train, args.components, seed=args.seed, reg=args.reg)
    single = fit_gmm(x_train, 1, seed=args.seed, reg=args.reg)
    print(f"EM: {len(gmm['log_likelihood'])} iterations in {time.time() - t0:.0f} s")

    def ll(model, x):
        return float(gmm_log_likelihood(x, model["weights"], model["means"],
                                        model["covariances"]).mean())

    arrays = {**limits, "weights": gmm["weights"].numpy(), "means": gmm["means"].numpy(),
              "covariances": gmm["covariances"].numpy()}
    prior = PosePrior(arrays, header0)
    e_held = prior.mixture_energy(torch.from_numpy(held)).numpy()
    p95 = float(np.percentile(e_held, 95))
    corrupted = {}
    for deg in args.corrupt_deg:
        bad = corrupt(held, deg, args.seed + 2)
        e_bad = prior.mixture_energy(torch.from_numpy(bad)).numpy()
        corrupted[f"{deg:g}_deg"] = {
            "energy_median": float(np.median(e_bad)),
            "above_heldout_p95": float(np.mean(e_bad > p95)),
            "within_limits": float(np.mean(P.limit_violation(bad).max(1) <= 1e-3))}
    torch_viol = prior.limit_violation(torch.from_numpy(held)).numpy()
    ref_viol = P.limit_violation(held)
    validation = {
        "mean_log_likelihood": {"mixture_train": ll(gmm, x_train),
                                "mixture_heldout": ll(gmm, x_held),
                                "one_gaussian_train": ll(single, x_train),
                                "one_gaussian_heldout": ll(single, x_held)},
        "energy_heldout_median": float(np.median(e_held)), "energy_heldout_p95": p95,
        "corrupted": corrupted,
        "heldout_within_limits": float(np.mean(ref_viol.max(1) <= 1e-3)),
        "limit_check_max_abs_diff_deg": float(np.abs(torch_viol - ref_viol).max()),
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    header = {
        "format": PRIOR_FORMAT,
        "feature": "rotation vectors (radians) of the 23 body joints (1-23) of SMPL's tree, "
                   "relative to Anny-24's A-pose rest (SMPL poses are moved to it with "
                   "rest_offsets); the root is not modelled",
        "energy": "max-mixture negative log-likelihood, 0 at the best component's mean",
        "fitted_on": {"sampler": "hmrkit.data.synthetic.poses.PoseSampler() defaults "
                                 "(key poses, slerp, noise, mirror, clamped to the limits)",
                      "train_poses": args.train, "train_seed": args.seed,
                      "heldout_poses": args.heldout, "heldout_seed": args.seed + 1,
                      "hmrkit_commit": commit},
        "em": {"components": args.components, "covariance_regularisation": args.reg,
               "iterations": len(gmm["log_likelihood"]), "init": "k-means++ then k-means"},
        "limits": "hmrkit.data.synthetic.poses JOINT_LIMITS (box on the written angles) and "
                  "SHOULDER_LIMIT (cone and twist), with its anatomical frames",
        "validation": validation,
        "command": "python scripts/make_pose_prior.py --out src/hmrkit/fit/data/"
                   "pose_prior_anny24.npz" + (f" --components {args.components}"
                                              if args.components != 8 else ""),
    }
    save_npz_with_header(args.out, {k: np.asarray(v) for k, v in arrays.items()}, header)
    for k, v in validation.items():
        print(f"{k}: {v}")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
