"""Table 3 in kind (dense-refinement paper, seed 002): end-point error of displacement networks
that read different renders (full / no_texture / texture_only) on test sets that differ only
in the texture of the renders (true, noisy, darker, another person's, none), next to the
zero field (no displacement: the error of the initial estimate itself).

    python benchmarks/table3_textures.py --nets full=runs/t3/full/net.pt \\
        no_texture=runs/t3/no_texture/net.pt texture_only=runs/t3/texture_only/net.pt \\
        --tests true=runs/t3/test-true.npz none=runs/t3/test-none.npz --out docs/results/table3

EPE: metric ``epe`` (eq. 3), pixels of the network's crop, mean over persons; one table over
all persons and one per kind of initial estimate (``init`` in the samples). Writes
``OUT/table3.json`` and ``OUT/table3.md`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hmrkit.io import atomic_write_text
from hmrkit.models.displacement import endpoint_error, load_displacement_net
from hmrkit.models.displacement_data import evaluate_epe, field_labels, load_samples

ZERO = "zero field"


def zero_field_epe(samples: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) EPE of predicting no displacement (eq. 3 with a zero prediction)."""
    target, mask = field_labels(samples)
    return endpoint_error(torch.zeros_like(target), target, mask).numpy()


def group_means(per_sample: dict[str, dict[str, np.ndarray]], init: np.ndarray,
                init_kinds) -> dict[str, dict[str, dict[str, float]]]:
    """``{group: {test: {column: mean EPE}}}`` from per-person EPEs ``{test: {column: (N,)}}``;
    groups ``all`` and every kind of initial estimate present (``init`` indexes
    ``init_kinds``), with ``n`` the persons of the group."""
    groups = {"all": np.ones(len(init), bool)}
    groups.update({str(k): init == i for i, k in enumerate(init_kinds) if (init == i).any()})
    return {g: {t: {"n": int(sel.sum()), **{c: float(v[sel].mean()) for c, v in cols.items()}}
                for t, cols in per_sample.items()}
            for g, sel in groups.items()}


def markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """One markdown table per group: a row per test texture, a column per network."""
    out = []
    for group, rows in table.items():
        cols = [c for c in next(iter(rows.values())) if c != "n"]
        n = next(iter(rows.values()))["n"]
        out += [f"**{group}** ({n} persons)", "",
                "| test texture | " + " | ".join(cols) + " |",
                "| --- |" + " ---: |" * len(cols)]
        out += [f"| {t} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |"
                for t, r in rows.items()]
        out.append("")
    return "\n".join(out)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--{what}: expected NAME=FILE, got {item!r}")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", required=True, help="NAME=net.pt ...")
    parser.add_argument("--tests", nargs="+", required=True, help="TEXTURE=samples.npz ...")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    nets = {k: load_displacement_net(p) for k, p in _pairs(args.nets, "nets").items()}
    per_sample, init = {}, None
    for name, path in _pairs(args.tests, "tests").items():
        samples = load_samples(path)
        if init is None:
            init, init_kinds, index = samples["init"], samples["init_kinds"], samples["index"]
        elif not np.array_equal(samples["index"], index) or not np.array_equal(
                samples["init"], init):
            raise SystemExit(f"{path}: not the persons / initial estimates of the first test set")
        per_sample[name] = {ZERO: zero_field_epe(samples),
                            **{k: evaluate_epe(net, samples) for k, net in nets.items()}}
    table = group_means(per_sample, init, init_kinds)
    out = Path(args.out)
    record = {"nets": _pairs(args.nets, "nets"), "tests": _pairs(args.tests, "tests"),
              "epe": table}
    atomic_write_text(out / "table3.json", json.dumps(record, indent=1))
    md = markdown(table)
    atomic_write_text(out / "table3.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
