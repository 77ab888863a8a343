"""Body model speed: Anny-24 (hmrkit's LBS) against Anny's own forward pass.

    python benchmarks/bench_body.py [--threads 2] [--batches 1 32 128] [--repeats 20]

Prints a Markdown table of median (and min) milliseconds (CPU, float32) of the forward pass
and of forward + backward (gradients to pose and shape), and each row's ratio to Anny's
full-mesh forward at the same batch, measured in the same run (runners interleaved).
Inputs: random rotations and betas for Anny-24; the equivalent Anny pose parameters and
random phenotypes for Anny.

Anny's full mesh is ``anny.Anny()`` from anny's cache (a cold build takes minutes and
~800 MB: pass ``--no-anny-full`` to skip it); Anny's decimated mesh runs Anny's own code on
the shipped reference data of its ``notoes_collapse10pc`` topology.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hmrkit.body import anny24 as a24
from hmrkit.body.model import BodyModel


def measure(runners: dict, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times (ms) of each ``runners[name]()``, run round-robin so that a load change on
    the machine hits every runner alike."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + repeats):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def random_pose(batch: int, seed: int = 0):
    import roma

    g = torch.Generator().manual_seed(seed)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(batch, 24, 3, generator=g))
    return rot, torch.randn(batch, 10, generator=g)


def anny24_runners(mesh: str, batch: int):
    """(forward, forward + backward) closures of the hmrkit Anny-24 model."""
    model = BodyModel(a24.load_anny24(mesh), dtype=torch.float32)
    rot, betas = random_pose(batch)

    def forward():
        with torch.no_grad():
            return model(rot[:, 0], rot[:, 1:], betas).vertices

    def backward():
        r, b = rot.clone().requires_grad_(), betas.clone().requires_grad_()
        model(r[:, 0], r[:, 1:], b).vertices.square().sum().backward()

    return forward, backward


def anny_runners(model, rig, batch: int):
    """(forward, forward + backward) closures of an ``anny.Anny`` model (float32)."""
    rot, _ = random_pose(batch)
    phen = torch.as_tensor(a24.sample_phenotypes("adults", batch, 0), dtype=torch.float64)
    params = a24.pose_to_anny(rot[:, 0].double(), rot[:, 1:].double(), phenotypes=phen,
                              rig=rig).float()
    phen = phen.float()

    def forward():
        with torch.no_grad():
            return model(pose_parameters=params, phenotype_kwargs=phen)["vertices"]

    def backward():
        p, f = params.clone().requires_grad_(), phen.clone().requires_grad_()
        model(pose_parameters=p, phenotype_kwargs=f)["vertices"].square().sum().backward()

    return forward, backward


def anny_models(full: bool, skinning: str) -> dict:
    """Anny's own models (float32): decimated from shipped data, full from anny's cache."""
    from hmrkit.body._anny_build import reference_anny

    rig = a24.load_anny_rig()
    models = {"anny decimated": reference_anny("decimated", rig)}
    if full:
        import anny

        models["anny full"] = anny.Anny()
    for model in models.values():
        model.set_skinning_method(skinning)
        model.to(torch.float32)
    return models, rig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-anny-full", action="store_true", help="skip anny.Anny()")
    parser.add_argument("--anny-skinning", default="lbs", help="anny's skinning_method")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, rig = anny_models(not args.no_anny_full, args.anny_skinning)

    rows = {}
    for batch in args.batches:
        repeats = max(5, args.repeats * 8 // max(batch, 8))
        pairs = {f"Anny-24 {m}": anny24_runners(m, batch) for m in ("decimated", "full")}
        pairs.update({name: anny_runners(m, rig, batch) for name, m in models.items()})
        runners = {(name, kind): fn for name, fns in pairs.items() for kind, fn in
                   zip(("fwd", "bwd"), fns, strict=True)}
        for (name, kind), t in measure(runners, repeats).items():
            rows.setdefault((name, batch), {})[kind] = t

    print(f"CPU, float32, torch threads = {args.threads}, anny skinning = "
          f"'{args.anny_skinning}'; median (min) ms over repeats run round-robin; "
          "ratio = anny full-mesh forward median / this forward median, same batch\n")
    print("| model | batch | forward ms | forward + backward ms | anny full fwd / fwd |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in dict.fromkeys(name for name, _ in rows):
        for batch in args.batches:
            t = rows[name, batch]
            fwd, bwd = statistics.median(t["fwd"]), statistics.median(t["bwd"])
            ref = rows.get(("anny full", batch))
            ratio = statistics.median(ref["fwd"]) / fwd if ref else float("nan")
            print(f"| {name} | {batch} | {fwd:.2f} ({min(t['fwd']):.2f}) | "
                  f"{bwd:.2f} ({min(t['bwd']):.2f}) | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
