"""Speed of the SMPLify-style fitter (``hmrkit.fit``) on the decimated Anny-24 mesh.

    OMP_NUM_THREADS=2 python benchmarks/bench_fit.py --threads 2 --batches 32 1

Prints, per batch size: the whole fit (100 Adam iterations, 33 BlazePose keypoints, pose
prior, joint limits, shape prior), and the cost of one iteration split by part (forward and
backward of each term alone, and the Adam step), as the median of ``--repeats`` runs of
wall-clock and process CPU time (on a shared machine the CPU time is the steadier figure; the
load average is printed before and after). ``--dense`` times a dense fit (all 1,229 vertices)
instead of the keypoint fit; ``--compile`` adds ``FitConfig(compile=True)`` (its first fit, the
compilation, and then the same fit), with its ratio to the eager fit of the same run; ``--ops``
counts the aten operations of one iteration (the fit is overhead-bound: see docs/fit.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from hmrkit.body import load_body_model
from hmrkit.fit import FitConfig, Fitter, Targets
from hmrkit.fit.fitter import _Posing
from hmrkit.fit.terms import reprojection_term
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.rotations import rotmat_to_sixd, sixd_to_rotmat


def problem(body, B: int, dense: bool, seed: int = 0):
    """A batch of persons: mean-ish pose, noisy projected targets."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.eye(3).repeat(B, 24, 1, 1)
    pose[:, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    betas = torch.zeros(B, body.num_betas)
    transl = torch.tensor([[0.1, 0.2, 4.0]]).repeat(B, 1)
    cam = Camera.default(torch.tensor([[640.0, 480.0]] * B))
    out = body(pose[:, 0], pose[:, 1:], betas)
    if dense:
        p = cam.project(out.vertices, transl)
        targets = Targets(vertices2d=p + 3 * torch.randn(p.shape, generator=g))
    else:
        p = cam.project(body.keypoints(out, "blazepose33"), transl)
        kp = torch.cat([p + 3 * torch.randn(p.shape, generator=g), torch.ones_like(p[..., :1])],
                       -1)
        targets = Targets(keypoints2d={"blazepose33": kp})
    return pose, betas, transl, cam, targets


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def parts(fitter: Fitter, pose, betas, transl, cam, targets, dense: bool) -> dict:
    """One iteration's pieces, each as forward + backward from fresh leaf parameters."""
    body = fitter.body
    posing = _Posing(body, () if dense else ("blazepose33",), dense)
    prior = fitter.prior
    sixd = rotmat_to_sixd(pose)
    scale = torch.ones(len(pose))

    def leaf():
        return sixd.clone().requires_grad_(), betas.clone().requires_grad_(), \
            transl.clone().requires_grad_()

    def run_posing():
        r, b, t = leaf()
        v, j = posing(sixd_to_rotmat(r), b)
        (v.sum() + j.sum() + t.sum()).backward()

    def run_data():
        r, b, t = leaf()
        v, j = posing(sixd_to_rotmat(r), b)
        if dense:
            proj = cam.project(v, t)
            loss = reprojection_term(proj, targets.vertices2d, torch.ones_like(proj[..., 0]),
                                     scale, 100.0)
        else:
            kp = targets.keypoints2d["blazepose33"]
            proj = cam.project(posing.keypoints("blazepose33", v, j), t)
            loss = reprojection_term(proj, kp[..., :2], kp[..., 2], scale, 100.0)
        loss.sum().backward()

    def run_mixture():
        r, _, _ = leaf()
        prior.mixture_energy(sixd_to_rotmat(r)).sum().backward()

    def run_limits():
        r, _, _ = leaf()
        prior.limit_energy(sixd_to_rotmat(r)).sum().backward()

    def run_priors():
        r, _, _ = leaf()
        sum(prior.energies(sixd_to_rotmat(r))).sum().backward()

    def run_shape():
        _, b, _ = leaf()
        (b * b).sum().backward()

    r, b, t = leaf()
    opt = torch.optim.Adam([r, b, t], lr=0.01)
    for p in (r, b, t):
        p.grad = torch.zeros_like(p)

    return {"rotations + body (fwd+bwd)": run_posing,
            "rotations + body + data term (fwd+bwd)": run_data,
            "pose prior, mixture (fwd+bwd)": run_mixture,
            "joint limits (fwd+bwd)": run_limits,
            "mixture + limits, one logarithm map, as the fit calls them (fwd+bwd)": run_priors,
            "shape prior (fwd+bwd)": run_shape,
            "Adam step": opt.step}


def operations_per_iteration(body, pose, betas, transl, cam, targets) -> float:
    """Aten operations of one fit iteration: the profiled count of a 30-iteration fit minus
    that of a 10-iteration one, over 20 (what fit set-up and scoring cost cancels out)."""
    from torch.profiler import ProfilerActivity, profile

    def count(iterations: int) -> int:
        fitter = Fitter(body, FitConfig(iterations=iterations, tol=0.0))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fitter.fit(pose, betas, transl, cam, targets)
        return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))

    return (count(30) - count(10)) / 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dense", action="store_true")
    parser.add_argument("--ops", action="store_true",
                        help="also count the aten operations of one iteration (torch.profiler)")
    parser.add_argument("--compile", action="store_true",
                        help="also time FitConfig(compile=True) (first fit: the compilation)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    body = load_body_model("anny24")
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average before "
          f"{os.getloadavg()[0]:.1f}; {'dense (1,229 vertices)' if args.dense else '33 keypoints'}")
    print("| batch | what | wall ms (median) | CPU ms (median) |")
    print("| ---: | --- | ---: | ---: |")
    for B in args.batches:
        pose, betas, transl, cam, targets = problem(body, B, args.dense)
        fitter = Fitter(body, FitConfig(iterations=args.iterations, tol=0.0))
        fitter.fit(pose, betas, transl, cam, targets)  # warm-up
        wall, cpu = timed(lambda: fitter.fit(pose, betas, transl, cam, targets), args.repeats)  # noqa: B023
        print(f"| {B} | fit, {args.iterations} iterations | {wall * 1e3:.0f} | {cpu * 1e3:.0f} |")
        if args.ops:
            print(f"| {B} | aten operations per iteration (forward, backward, step) | "
                  f"{operations_per_iteration(body, pose, betas, transl, cam, targets):.0f} | |")
        if args.compile:
            compiled = Fitter(body, FitConfig(iterations=args.iterations, tol=0.0, compile=True))
            first, first_cpu = timed(lambda: compiled.fit(pose, betas, transl, cam, targets), 1)  # noqa: B023
            print(f"| {B} | fit, compiled loss, first call (compilation) | {first * 1e3:.0f} | "
                  f"{first_cpu * 1e3:.0f} |")
            w, c = timed(lambda: compiled.fit(pose, betas, transl, cam, targets), args.repeats)  # noqa: B023
            print(f"| {B} | fit, compiled loss | {w * 1e3:.0f} | {c * 1e3:.0f} |")
            print(f"| {B} | compiled / eager (wall) | {w / wall:.2f} | |")
        for name, fn in parts(fitter, pose, betas, transl, cam, targets, args.dense).items():
            fn()
            w, c = timed(fn, 20)
            print(f"| {B} | {name} | {w * 1e3:.2f} | {c * 1e3:.2f} |")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
