"""Table 3 in kind, the fit half (dense-refinement paper, seed 002): the 3D accuracy after
fitting the body to the field of each displacement network (full / no_texture /
texture_only) on test sets that differ only in the texture of the renders, next to the
initial estimate (no refinement) and two controls: the zero field (no displacement) and the
true field (the samples' ``displacement``, the upper bound).

    python benchmarks/table3_fit.py --nets full=runs/t3/full/net.pt \\
        no_texture=runs/t3/no_texture/net.pt texture_only=runs/t3/texture_only/net.pt \\
        --tests true=runs/t3/test-true.npz none=runs/t3/test-none.npz \\
        --data data/synth/val --out docs/results/table3-fit

Per person of the test sets (samples of :func:`hmrkit.models.displacement_data.make_samples`,
all with the same persons and initial estimates): the field the network predicts from the
stored crop and renders (:func:`~hmrkit.models.displacement_data.predict_fields`, as its EPE
is measured), averaged onto the visible vertices of the initial estimate re-rendered in the
same crop view (eq. 5) and mapped to full-image pixels
(:func:`hmrkit.models.dense_refiner.field_targets`), then fitted by the dense refiner's fit
(:data:`~hmrkit.models.dense_refiner.DENSE_CONFIG`, eq. 7) with the person's full-image
camera; scored as ``hmrkit evaluate`` scores (:func:`hmrkit.metrics.scoring.score`, protocol
``lsp14``, mm) against the labels of the split the samples were made from (``--data``;
default: the ``data`` path the samples record). Fields identical bit for bit (the zero and true
fields in every set; a network that reads no RGB) are fitted once. Besides the EPE (eq. 3, over
the rendered pixels), ``vertex_epe`` is the error the fit sees: the distance between the
per-vertex displacements (eq. 5) of the field and of the true field, mean over the visible
vertices (crop pixels); ``error_2d`` the distance between the projections of the estimate's and
the true mesh's vertices in the crop, mean over every vertex (crop pixels). Writes
``OUT/table3_fit.json`` (means per group), ``OUT/table3_fit_per_person.json`` (2D error,
PA-MPJPE and PVE of every person, in the samples' order) and ``OUT/table3_fit.md`` (one table
over all persons, then one per kind of initial estimate) and prints the markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hmrkit.body import load_body_model
from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.labels import LabelBodies
from hmrkit.fit import FitConfig, Fitter, PosePrior
from hmrkit.fit.dense import CropView, crop_view, project, render_inputs
from hmrkit.geometry.cameras import Camera
from hmrkit.io import atomic_write_text
from hmrkit.metrics.scoring import score
from hmrkit.models.dense_refiner import DENSE_CONFIG, field_targets
from hmrkit.models.displacement import endpoint_error, load_displacement_net
from hmrkit.models.displacement_data import (
    field_labels,
    load_samples,
    network_crops,
    predict_fields,
)
from hmrkit.models.registry import parse_options
from hmrkit.render.gbuffer import GBuffer
from hmrkit.render.maps import accumulate_to_vertices, unique_vertex_colors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table3_textures import ZERO, _pairs, group_means, zero_field_epe  # noqa: E402

log = logging.getLogger("table3_fit")

PROTOCOL = "lsp14"
BODY = "anny24"
INITIAL = "initial estimate"
TRUE = "true field"
METRICS = ("epe", "vertex_epe", "error_2d", "mpjpe", "pa_mpjpe", "pve", "pa_pve", "root_transl")
PER_PERSON = {"error_2d": 2, "pa_mpjpe": 1, "pve": 1}
"""Metrics written per person (for paired comparisons), with their decimals."""
LABEL_KEYS = ("image", "crop_affine", "box_size", "camera/intrinsics", "camera/image_size",
              "global_orient", "body_pose", "betas", "transl", "meta/index", "meta/body_model")


def load_people(samples: dict[str, np.ndarray], data=None) -> dict[str, torch.Tensor]:
    """The samples' persons as the split holds them (``SyntheticDataset`` items ``0..N-1``, as
    :func:`make_samples` took them): labels, camera, ``box_size`` and the full-image -> crop
    affine at the network's resolution (``crop_affine``, float64). Checked against the samples'
    ``index`` and crops."""
    from hmrkit.data.dataset import SyntheticDataset

    cfg = json.loads(str(samples["config"]))
    data = data or cfg["data"]
    ds = SyntheticDataset(data, cfg["split"], crop_size=cfg["crop_size"], keys=LABEL_KEYS,
                          crop_style=cfg.get("crop_style", "box"))  # older samples: box
    n = len(samples["index"])
    if len(ds) < n:
        raise SystemExit(f"{data}: {len(ds)} persons, the samples hold {n}")
    items = [ds[i] for i in range(n)]
    people = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    if not np.array_equal(people["meta/index"].numpy(), samples["index"]):
        raise SystemExit(f"{data}: its persons are not those of the samples (meta/index)")
    crops, people["crop_affine"] = network_crops(people.pop("image"), people["crop_affine"],
                                                 cfg["resolution"])
    if not np.array_equal(np.round(crops.numpy() * 255).astype(np.uint8), samples["image"]):
        raise SystemExit(f"{data}: its crops are not the samples' crops")
    return people


@dataclass
class Initial:
    """The initial estimates and their geometry in the crops (the same in every test set)."""

    rotmat: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    camera: Camera
    views: list[CropView]
    gbufs: list[GBuffer]
    vertices: np.ndarray
    """(N, V, 3) float64 camera frame, translation included."""
    mask: np.ndarray
    """(N, 1, R, R) bool rendered pixels."""
    true2d: np.ndarray
    """(N, V, 2) the true meshes' vertices projected in the crop views (crop pixels)."""

    def error_2d(self, vertices: np.ndarray) -> np.ndarray:
        """(N,) mean distance (crop pixels) between the projections of ``vertices (N, V, 3)``
        (camera frame, translation included) and of the true mesh, over every vertex."""
        return np.array([np.linalg.norm(project(view, v) - t, axis=-1).mean()
                         for view, v, t in zip(self.views, vertices, self.true2d, strict=True)])


def initial_geometry(samples: dict[str, np.ndarray], people: dict[str, torch.Tensor]
                     ) -> Initial:
    """Re-render the samples' initial estimates in their crop views (G-buffers, as
    :func:`make_samples` rendered them: float64 body, untextured)."""
    body = load_body_model(BODY, dtype=torch.float64)
    faces = body.faces.numpy()
    colors = unique_vertex_colors(body.v_template.numpy())
    rotmat = torch.from_numpy(samples["rotmat"]).double()
    betas = torch.from_numpy(samples["betas"]).double()
    transl = torch.from_numpy(samples["transl"]).double()
    camera = Camera.from_sample({k: v.double() for k, v in people.items()
                                 if k.startswith("camera/")})
    res = samples["mask"].shape[-1]
    views = crop_view(camera, people["crop_affine"], res)
    with torch.no_grad():
        verts = (body(rotmat[:, 0], rotmat[:, 1:], betas[:, : body.num_betas]).vertices
                 + transl[:, None]).numpy()
        true = (body(people["global_orient"].double(), people["body_pose"].double(),
                     people["betas"].double()[:, : body.num_betas]).vertices
                + people["transl"].double()[:, None]).numpy()
    gbufs, masks = [], []
    for view, v in zip(views, verts, strict=True):
        maps, gbuf = render_inputs(view, v, faces, colors)
        gbufs.append(gbuf)
        masks.append(maps["mask"] > 0.5)
    true2d = np.stack([project(view, t) for view, t in zip(views, true, strict=True)])
    return Initial(rotmat, betas, transl, camera, views, gbufs, verts, np.stack(masks), true2d)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _score(est: BodyEstimate, people: dict[str, torch.Tensor], sl: slice, labels: LabelBodies
           ) -> dict[str, np.ndarray]:
    batch = {k: v[sl] for k, v in people.items()}
    return {k: v.double().numpy() for k, v in score(est, batch, labels, PROTOCOL).items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def initial_metrics(initial: Initial, people, body, batch_size: int = 32
                    ) -> dict[str, np.ndarray]:
    """Per-person errors (mm) of the initial estimates, as ``hmrkit evaluate`` scores them,
    and their 2D error (:meth:`Initial.error_2d`)."""
    labels = LabelBodies(body, BODY)
    parts = []
    for sl in _batches(len(initial.rotmat), batch_size):
        est = BodyEstimate(rotmat=initial.rotmat[sl].to(body.v_template),
                           betas=initial.betas[sl].to(body.v_template),
                           transl=initial.transl[sl].to(body.v_template)).posed(body)
        parts.append(_score(est, people, sl, labels))
    return {**_concat(parts), "error_2d": initial.error_2d(initial.vertices)}


def fit_field(field: np.ndarray, initial: Initial, people, fitter: Fitter,
              batch_size: int = 32) -> dict[str, np.ndarray]:
    """Fit every person to its per-pixel field ``(N, 2, R, R)`` (crop pixels; eqs. 5-7) from
    its initial estimate, ``batch_size`` persons per fit; per-person errors (mm) and
    ``error_2d`` (:meth:`Initial.error_2d`) and ``fitted`` (1 where the fitter's status is
    ok)."""
    body = fitter.body
    like = body.v_template
    faces = body.faces.cpu().numpy()
    labels = LabelBodies(body, BODY)
    parts, fitted_vertices = [], []
    for sl in _batches(len(field), batch_size):
        fields = [f.transpose(1, 2, 0).astype(np.float64) for f in field[sl]]
        targets = field_targets(initial.views[sl], initial.gbufs[sl], fields,
                                initial.vertices[sl], faces, people["crop_affine"][sl]).to(like)
        targets.person_size = people["box_size"][sl].reshape(-1).to(like)  # as FitRefiner
        camera = initial.camera[sl].to(like)
        with torch.enable_grad():
            result = fitter.fit(initial.rotmat[sl].to(like), initial.betas[sl].to(like),
                                initial.transl[sl].to(like), camera, targets)
        est = BodyEstimate(rotmat=result.rotmat, betas=result.betas, transl=result.transl,
                           vertices=result.vertices, joints=result.joints)
        fitted_vertices.append((result.vertices + result.transl[:, None]).detach())
        metrics = _score(est, people, sl, labels)
        metrics["fitted"] = np.array([s == "ok" for s in result.status], float)
        parts.append(metrics)
    out = _concat(parts)
    fitted = torch.cat(fitted_vertices).double().numpy()
    return {**out, "error_2d": initial.error_2d(fitted)}


def fields_of(samples: dict[str, np.ndarray], nets: dict
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Column -> (field ``(N, 2, R, R)`` float32, EPE ``(N,)``): the zero field, each
    network's, the true field."""
    target, mask = field_labels(samples)
    out = {ZERO: (np.zeros(target.shape, np.float32), zero_field_epe(samples))}
    for name, net in nets.items():
        pred = predict_fields(net, samples)
        out[name] = (pred.numpy(), endpoint_error(pred, target, mask).numpy())
    out[TRUE] = (target.numpy(), np.zeros(len(target)))
    return out


def vertex_epe(field: np.ndarray, reference: np.ndarray, initial: Initial, faces: np.ndarray
               ) -> np.ndarray:
    """(N,) the fit's view of a field's error: the distance (crop pixels) between the
    per-vertex displacements eq. 5 makes of ``field`` and of ``reference`` (the true field),
    both ``(N, 2, R, R)``, mean over the visible vertices (eq. 5 is linear: the average of the
    difference)."""
    out = np.zeros(len(field))
    for b, gbuf in enumerate(initial.gbufs):
        diff = (field[b].astype(np.float64) - reference[b].astype(np.float64)).transpose(1, 2, 0)
        d, weight = accumulate_to_vertices(gbuf, faces, diff, initial.vertices.shape[1])
        out[b] = np.linalg.norm(d[weight > 0], axis=-1).mean() if (weight > 0).any() else 0.0
    return out


def run(tests: dict[str, dict[str, np.ndarray]], nets: dict, data=None, batch_size: int = 32,
        progress: bool = True, config: FitConfig = DENSE_CONFIG) -> tuple[dict, dict]:
    """Per-person metrics ``{test: {column: {metric: (N,)}}}`` (columns: the initial estimate,
    the zero field, the networks, the true field) and run facts (mask check, fits run); fits
    with ``config`` (default: the dense refiner's)."""
    first = next(iter(tests.values()))
    people = load_people(first, data)
    initial = initial_geometry(first, people)
    facts = {"mask_mismatch_pixels": {}, "fits": 0, "fit_seconds": 0.0}
    body = load_body_model(BODY)
    fitter = Fitter(body, config, PosePrior.for_body(body))
    before = initial_metrics(initial, people, body, batch_size)
    before["epe"] = before["vertex_epe"] = np.full(len(initial.rotmat), np.nan)
    faces = body.faces.numpy()
    before["fitted"] = np.zeros(len(initial.rotmat))
    cache: dict[str, dict[str, np.ndarray]] = {}
    per: dict = {}
    for test, samples in tests.items():
        for k in ("index", "init", "rotmat", "betas", "transl"):
            if not np.array_equal(samples[k], first[k]):
                raise SystemExit(f"test set {test!r}: its {k} differs from the first set's")
        facts["mask_mismatch_pixels"][test] = int((samples["mask"] != initial.mask).sum())
        per[test] = {INITIAL: before}
        fields = fields_of(samples, nets)
        for column, (field, epe) in fields.items():
            key = hashlib.sha1(np.ascontiguousarray(field).tobytes()).hexdigest()
            if key not in cache:
                start = time.perf_counter()
                cache[key] = fit_field(field, initial, people, fitter, batch_size)
                facts["fits"] += 1
                facts["fit_seconds"] += time.perf_counter() - start
                if progress:
                    log.info("%s / %s: PA-MPJPE %.1f mm (%.0f s)", test, column,
                             np.nanmean(cache[key]["pa_mpjpe"]), time.perf_counter() - start)
            per[test][column] = {**cache[key], "epe": epe,
                                 "vertex_epe": vertex_epe(field, fields[TRUE][0], initial, faces)}
    return per, facts


def tables(per: dict, init: np.ndarray, init_kinds) -> dict:
    """``{group: {test: {"n", column: {metric: mean}}}}`` (groups as in table3_textures)."""
    metrics = [*METRICS, "fitted"]
    means = {m: group_means({t: {c: v[m] for c, v in cols.items()} for t, cols in per.items()},
                            init, init_kinds) for m in metrics}
    out: dict = {}
    for group, rows in means["epe"].items():
        out[group] = {}
        for test, row in rows.items():
            out[group][test] = {"n": row["n"]}
            for column in per[test]:
                out[group][test][column] = {m: means[m][group][test][column] for m in metrics}
    return out


def _finite(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _num(x: float) -> str:
    return "" if not np.isfinite(x) else f"{x:.1f}"


def markdown(table: dict) -> str:
    """Per group: a row per test texture and refinement, columns EPE, vertex EPE and 2D error
    (crop pixels), MPJPE, PA-MPJPE,
    PVE, PA-PVE (mm) and the persons fitted."""
    out = []
    for group, tests in table.items():
        n = next(iter(tests.values()))["n"]
        out += [f"**{group}** ({n} persons; EPE, vertex EPE and 2D error in pixels of the "
                "crop, 3D errors in mm)", "",
                "| test texture | refinement | EPE | vertex EPE | 2D error | MPJPE | PA-MPJPE "
                "| PVE | PA-PVE | fitted |", "| --- | --- |" + " ---: |" * 8]
        for test, cols in tests.items():
            for column, m in cols.items():
                if column == "n":
                    continue
                epe = " | ".join("" if not np.isfinite(m[k]) else f"{m[k]:.2f}"
                                 for k in ("epe", "vertex_epe", "error_2d"))
                out.append(f"| {test} | {column} | {epe} | {_num(m['mpjpe'])} | "
                           f"{_num(m['pa_mpjpe'])} | {_num(m['pve'])} | {_num(m['pa_pve'])} | "
                           f"{round(m['fitted'] * n)} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", required=True, help="NAME=net.pt ...")
    parser.add_argument("--tests", nargs="+", required=True, help="TEXTURE=samples.npz ...")
    parser.add_argument("--data", help="the split the samples were made from (default: the "
                        "path they record)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit-arg", action="append", metavar="KEY=VALUE",
                        help="a FitConfig field changed from the dense refiner's fit "
                        "(repeatable), e.g. pose_prior_weight=1.0")
    args = parser.parse_args(argv)
    changes = parse_options(args.fit_arg, "--fit-arg")
    try:
        config = dataclasses.replace(DENSE_CONFIG, **changes)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"--fit-arg: {err}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    net_paths, test_paths = _pairs(args.nets, "nets"), _pairs(args.tests, "tests")
    nets = {k: load_displacement_net(p) for k, p in net_paths.items()}
    tests = {k: load_samples(p) for k, p in test_paths.items()}
    per, facts = run(tests, nets, args.data, args.batch_size, config=config)
    first = next(iter(tests.values()))
    table = tables(per, first["init"], first["init_kinds"])
    facts["seconds"] = round(time.perf_counter() - start, 1)
    facts["fit_seconds"] = round(facts["fit_seconds"], 1)
    record = {"nets": net_paths, "tests": test_paths, "data": args.data,
              "protocol": PROTOCOL, "fit": {"base": "DENSE_CONFIG", **changes},
              "batch_size": args.batch_size,
              "facts": facts, "table": table}
    per_person = {t: {c: {m: np.round(v[m], d).tolist() for m, d in PER_PERSON.items()}
                      for c, v in cols.items()} for t, cols in per.items()}
    out = Path(args.out)
    atomic_write_text(out / "table3_fit.json", json.dumps(_finite(record), indent=1))
    atomic_write_text(out / "table3_fit_per_person.json", json.dumps(_finite(per_person)))
    md = markdown(table)
    atomic_write_text(out / "table3_fit.md", md)
    print(md)
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
