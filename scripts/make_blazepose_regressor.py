"""Fit the 33 BlazePose landmarks as vertex regressors on Anny-24 (decimated and full mesh).

BlazePose's landmarks follow its own annotation (its "shoulder" is not Anny's joint centre
nor COCO's), so they are learnt from BlazePose itself: render synthetic people with known
vertices (hmrkit's scene engine, one person per image, no occluders), run BlazePose on the full
images, and fit for every landmark non-negative vertex weights summing to one whose
projection matches the detected 2D landmark over all views:

    sum_v w_v ((u - c_x) Z_v - f X_v) = 0,  sum_v w_v ((v - c_y) Z_v - f Y_v) = 0

(the projection equations multiplied by depth, each row divided by the person's depth and box
size so that residuals are in box units), solved by NNLS with the sum-to-one row weighted
heavily, over the vertices whose projections lie closest to the landmark in most views, with
two rounds of outlier rejection. Left and right landmarks are fitted together through the
mesh's mirror map (``vertex_flip``), so the regressor is exactly left-right symmetric; middle
landmarks (nose) are symmetrised. Only landmarks BlazePose calls visible (>= 0.5) in images
where its 12 limb joints match the labels (median error < 5 % of the box) are used.

    python scripts/make_blazepose_regressor.py collect --scenes 2400 --out data/bp_regressor
    python scripts/make_blazepose_regressor.py fit --obs data/bp_regressor \\
        --out src/hmrkit/body/data/anny24_blazepose33.npz

``collect`` is resumable (chunks of observations); ``fit`` holds out the last ``--holdout``
scenes and reports, per landmark, the 2D error of the regressor against BlazePose on them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

from hmrkit.blazepose.names import BLAZEPOSE33_FLIP, BLAZEPOSE33_NAMES, COCO17_FROM_BLAZEPOSE33
from hmrkit.body import load_body_model
from hmrkit.body.keypoints import COCO17_NAMES

LIMBS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
         "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
         "right_ankle")
BP_LIMBS = [BLAZEPOSE33_NAMES.index(n) for n in LIMBS]
COCO_LIMBS = [COCO17_NAMES.index(n) for n in LIMBS]
SCENE = dict(seed=33, split="val", people=(1.0, 0.0, 0.0), occluder_prob=0.0)
CHUNK = 100


# ------------------------------------------------------------------ collect
def collect(args) -> None:
    from hmrkit.blazepose import BlazePose
    from hmrkit.data.synthetic.scene import SceneConfig, SceneEngine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    engine = SceneEngine(SceneConfig(**SCENE))
    bp = BlazePose(args.variant, min_score=0.5)
    for start in range(0, args.scenes, CHUNK):
        path = out / f"obs-{start:06d}.npz"
        if path.is_file():
            continue
        t = time.time()
        rows = []
        for index in range(start, min(start + CHUNK, args.scenes)):
            scene = engine.render(index)
            lab, cam = scene["labels"], scene["camera"]
            people = bp.detect(scene["image"])
            coco = lab["keypoints2d/coco17"][0, COCO_LIMBS]
            best, best_err = None, np.inf
            for p in people:
                vis = coco[:, 2] > 0
                if vis.sum() < 4:
                    continue
                err = np.median(np.linalg.norm(p.landmarks[BP_LIMBS, :2][vis] - coco[vis, :2],
                                               axis=1)) / lab["box_size"][0]
                if err < best_err:
                    best, best_err = p, err
            if best is None:
                continue
            rows.append(dict(
                index=index, match_error=best_err, visible_fraction=lab["visible_fraction"][0],
                box_size=lab["box_size"][0], K=cam.K, size=(cam.width, cam.height),
                landmarks=best.landmarks[:, :2], visibility=best.visibility,
                global_orient=lab["global_orient"][0], body_pose=lab["body_pose"][0],
                betas=lab["betas"][0], transl=lab["transl"][0],
                joints3d=lab["joints3d"][0],
            ))
        arrays = {k: np.stack([np.asarray(r[k], np.float64) for r in rows]) for k in rows[0]}
        from hmrkit.io import atomic_save_npz

        atomic_save_npz(path, arrays)
        print(f"{path}: {len(rows)} people in {time.time() - t:.0f} s", flush=True)


def load_observations(folder) -> dict[str, np.ndarray]:
    parts = [dict(np.load(p)) for p in sorted(Path(folder).glob("obs-*.npz"))]
    if not parts:
        raise FileNotFoundError(f"no obs-*.npz in {folder}: run the collect step first")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ------------------------------------------------------------------ fit
def posed_vertices(body, obs, rows) -> np.ndarray:
    """Camera-frame vertices (len(rows), V, 3) of the observed people (float64)."""
    out = []
    for chunk in np.array_split(rows, max(1, len(rows) // 64)):
        with torch.no_grad():
            o = body(torch.as_tensor(obs["global_orient"][chunk]),
                     torch.as_tensor(obs["body_pose"][chunk]),
                     torch.as_tensor(obs["betas"][chunk]))
        out.append((o.vertices.numpy() + obs["transl"][chunk][:, None]).astype(np.float32))
    return np.concatenate(out)


def project(points, K):
    uvw = np.einsum("sij,svj->svi", K, points)
    return uvw[..., :2] / uvw[..., 2:]


def equations(verts, obs, rows, landmark, columns):
    """Depth-multiplied projection rows (2S, C) and the per-row sample index."""
    K = obs["K"][rows]
    u = obs["landmarks"][rows, landmark]
    v = verts[:, columns]  # (S, C, 3)
    depth = verts[..., 2].mean(1)  # (S,)
    scale = (depth * obs["box_size"][rows])[:, None]
    ax = ((u[:, :1] - K[:, 0, 2:3]) * v[..., 2] - K[:, 0, 0:1] * v[..., 0]) / scale
    ay = ((u[:, 1:] - K[:, 1, 2:3]) * v[..., 2] - K[:, 1, 1:2] * v[..., 1]) / scale
    return np.concatenate([ax, ay]), np.concatenate([np.arange(len(rows))] * 2)


def fit_landmarks(verts, obs, rows, valid, flip, support_size, weight_sum=100.0):
    """(33, V) weights. ``valid (S, 33)``: observations used; ``flip``: vertex mirror map."""
    S, V, _ = verts.shape
    W = np.zeros((33, V))
    proj = project(verts, obs["K"][rows])  # (S, V, 2)
    done = set()
    report = {}
    for k in range(33):
        if k in done:
            continue
        m = BLAZEPOSE33_FLIP[k]
        members = [k] if m == k else [k, m]
        done.update(members)
        # candidates: vertices projecting closest to the landmark in most views
        med = []
        for j in members:
            d = np.linalg.norm(proj - obs["landmarks"][rows, j][:, None], axis=-1)
            d = d / obs["box_size"][rows][:, None]
            d[~valid[:, j]] = np.nan
            med.append(np.nanmedian(d, axis=0))
        score = med[0] if len(members) == 1 else np.minimum(med[0], med[1][flip])
        support = np.argsort(score)[:support_size]
        keep = [valid[:, j].copy() for j in members]
        for _ in range(3):
            blocks, owners = [], []
            for j, cols, ok in zip(members, [support, flip[support]], keep, strict=False):
                A, sample = equations(verts[ok], obs, rows[ok], j, cols)
                blocks.append(A)
                owners.append((j, ok, sample))
            A = np.vstack(blocks + [weight_sum * np.ones(len(support))])
            b = np.zeros(len(A))
            b[-1] = weight_sum
            w, _ = nnls(A, b, maxiter=100 * len(support))
            w = w / w.sum()
            # reject outliers: samples whose projected error exceeds 3x the median
            new_keep = []
            for j, ok, _sample in owners:
                cols = support if j == k else flip[support]
                pt = np.einsum("c,scd->sd", w, verts[:, cols])
                err = np.linalg.norm(project(pt[:, None], obs["K"][rows])[:, 0]
                                     - obs["landmarks"][rows, j], axis=1) / obs["box_size"][rows]
                thr = max(3 * np.median(err[ok]), 0.02)
                new_keep.append(valid[:, j] & (err < thr))
            keep = new_keep
        W[k, support] = w
        if m != k:
            W[m, flip[support]] = w
        else:
            W[k] = (W[k] + W[k, flip]) / 2  # symmetric middle landmark
        for j, ok in zip(members, keep, strict=True):
            report[BLAZEPOSE33_NAMES[j]] = {"observations": int(ok.sum()),
                                            "pair_observations": int(sum(x.sum() for x in keep))}
    return W, report


def evaluate(W, verts, obs, rows, valid):
    """Per-landmark median 2D error (% of box) and mean px of the regressor vs BlazePose."""
    pts = np.einsum("kv,svd->skd", W, verts)
    proj = project(pts, obs["K"][rows])
    err = np.linalg.norm(proj - obs["landmarks"][rows], axis=-1)
    rel = 100 * err / obs["box_size"][rows][:, None]
    out = {}
    for k, name in enumerate(BLAZEPOSE33_NAMES):
        ok = valid[:, k]
        out[name] = {"median_pct_box": float(np.median(rel[ok, k])),
                     "mean_px": float(err[ok, k].mean()), "n": int(ok.sum())}
    return out


def fit(args) -> None:
    from hmrkit.io import save_npz_with_header

    obs = load_observations(args.obs)
    good = (obs["match_error"] < 0.05) & (obs["visible_fraction"] > 0.9)
    rows = np.nonzero(good)[0]
    order = np.argsort(obs["index"][rows])
    rows = rows[order]
    held = rows[obs["index"][rows] >= obs["index"].max() + 1 - args.holdout]
    train = np.setdiff1d(rows, held)
    W_all, header_meshes = {}, {}
    for mesh, name, support in (("decimated", "anny24", args.support_decimated),
                                ("full", "anny24-full", args.support_full)):
        body = load_body_model(name, dtype=torch.float64)
        flip = body.data.vertex_flip.astype(np.int64)
        t = time.time()
        verts = posed_vertices(body, obs, train)
        valid = (obs["visibility"][train] >= args.min_visibility)
        W, report = fit_landmarks(verts, obs, train, valid, flip, support)
        W[W < 1e-4] = 0
        W /= W.sum(1, keepdims=True)
        fit_seconds = time.time() - t
        hv = posed_vertices(body, obs, held)
        hvalid = obs["visibility"][held] >= args.min_visibility
        heldout = evaluate(W, hv, obs, held, hvalid)
        trainerr = evaluate(W, verts, obs, train, valid)
        for k, n in enumerate(BLAZEPOSE33_NAMES):
            report[n].update(nonzero=int((W[k] > 0).sum()), heldout=heldout[n],
                             train_median_pct_box=trainerr[n]["median_pct_box"])
        J = body.data.num_joints
        W_all[mesh] = np.hstack([np.zeros((33, J)), W]).astype(np.float32)
        header_meshes[mesh] = {"vertices": int(W.shape[1]), "support": support,
                               "fit_seconds": fit_seconds, "landmarks": report}
        print(f"{mesh}: fitted in {fit_seconds:.0f} s; held-out median error (% box) per "
              "landmark:")
        for n in BLAZEPOSE33_NAMES:
            h = report[n]["heldout"]
            print(f"  {n:18s} {h['median_pct_box']:5.2f} %  {h['mean_px']:6.1f} px "
                  f"(n={h['n']}, {report[n]['nonzero']} vertices)")
    # rest-pose checks: against Anny-24's COCO-17 regressor, and decimated against full mesh
    rest = {}
    for mesh, name in (("decimated", "anny24"), ("full", "anny24-full")):
        data = load_body_model(name).data
        J = data.num_joints
        rest[mesh] = W_all[mesh][:, J:].astype(np.float64) @ data.v_template
        coco = data.keypoint_regressors["coco17"][:, J:] @ data.v_template
        gap = np.linalg.norm(rest[mesh][list(COCO17_FROM_BLAZEPOSE33)] - coco, axis=1) * 1000
        header_meshes[mesh]["rest_pose_mm_from_coco17_regressor"] = dict(
            zip(COCO17_NAMES, np.round(gap, 1).tolist(), strict=True))
        print(f"{mesh}: rest-pose distance to the COCO-17 regressor (mm):",
              dict(zip(COCO17_NAMES, np.round(gap).astype(int).tolist(), strict=True)))
    between = float(np.linalg.norm(rest["decimated"] - rest["full"], axis=1).max() * 1000)
    print(f"decimated vs full mesh, rest pose: largest distance {between:.1f} mm")
    header = {
        "format": "hmrkit-keypoint-regressor", "keypoint_set": "blazepose33",
        "names": list(BLAZEPOSE33_NAMES),
        "layout": "(33, 24 + V) weights over [joints; vertices] like keypoint_regressors",
        "method": " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " "),
        "collect_command": "python scripts/make_blazepose_regressor.py collect --scenes "
                           f"{int(obs['index'].max() + 1)} --variant {args.obs_variant} "
                           f"--out {args.obs}",
        "detector": f"hmrkit.blazepose.BlazePose('{args.obs_variant}')",
        "scenes": {**SCENE, "count": int(obs["index"].max() + 1)},
        "used_people": {"train": int(len(train)), "heldout": int(len(held))},
        "min_visibility": args.min_visibility,
        "command": "python scripts/make_blazepose_regressor.py fit " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("what", "func")),
        "meshes": header_meshes,
        "rest_pose_decimated_vs_full_max_mm": between,
    }
    save_npz_with_header(args.out, W_all, header)
    print(f"wrote {args.out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--scenes", type=int, default=2400)
    c.add_argument("--variant", default="heavy", choices=("lite", "full", "heavy"))
    c.add_argument("--out", default="data/bp_regressor")
    c.add_argument("--threads", type=int, default=1)
    f = sub.add_parser("fit")
    f.add_argument("--obs", default="data/bp_regressor")
    f.add_argument("--obs-variant", default="heavy", help="the variant collect used (recorded)")
    f.add_argument("--out", default="src/hmrkit/body/data/anny24_blazepose33.npz")
    f.add_argument("--holdout", type=int, default=400, help="last scenes held out")
    f.add_argument("--min-visibility", type=float, default=0.5)
    f.add_argument("--support-decimated", type=int, default=40)
    f.add_argument("--support-full", type=int, default=200)
    args = ap.parse_args(argv)
    (collect if args.what == "collect" else fit)(args)


if __name__ == "__main__":
    main()
