"""The README's demo on the embedded default: pose open Anny-24 bodies, write meshes and pictures.

It grows with hmrkit: today it builds the open body model, poses a few bodies from the key
pose library with random adult shapes, and writes for each one the full-resolution mesh
(OBJ and PLY), its parameters and keypoints (NPZ), and one contact sheet of front and side
renders; it prints a summary table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from hmrkit.body import load_body_model
from hmrkit.data.synthetic.poses import KEY_POSES, key_pose
from hmrkit.io import atomic_write_text, save_mesh
from hmrkit.render.draw import contact_sheet, render_views, write_image


def run_demo(out: str | Path = "demo_out", num_bodies: int = 8, seed: int = 0) -> dict:
    """Run the demo; returns the summary that it also writes to ``out/index.json``."""
    out = Path(out)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    train_body = load_body_model("anny24")
    full_body = load_body_model("anny24-full")

    names = [list(KEY_POSES)[i % len(KEY_POSES)] for i in range(num_bodies)]
    pose = torch.stack([key_pose(n) for n in names])
    betas = torch.randn(num_bodies, full_body.num_betas) * 0.8
    betas[0] = 0.0  # the mean adult
    with torch.no_grad():
        t0 = time.perf_counter()
        full = full_body(pose[:, 0], pose[:, 1:], betas)
        t_full = time.perf_counter() - t0
        t0 = time.perf_counter()
        train = train_body(pose[:, 0], pose[:, 1:], betas)
        t_train = time.perf_counter() - t0
        coco = full_body.keypoints(full, "coco17")
        rest_v, _ = full_body.rest(betas)

    faces = full_body.faces.numpy()
    tiles, labels, rows = [], [], []
    for i, name in enumerate(names):
        stem = f"body{i:02d}_{name}"
        verts = full.vertices[i].numpy()
        save_mesh(out / "meshes" / f"{stem}.obj", verts, faces)
        save_mesh(out / "meshes" / f"{stem}.ply", verts, faces)
        np.savez(
            out / "meshes" / f"{stem}.npz",
            pose_rotmat=pose[i].numpy(), betas=betas[i].numpy(),
            joints=full.joints[i].numpy(), coco17=coco[i].numpy(),
        )
        height = float(rest_v[i, :, 1].max() - rest_v[i, :, 1].min())
        tiles += render_views(verts, faces, size=256)
        labels += [f"{stem} front", f"{stem} side"]
        rows.append({"body": stem, "pose": name, "height_m": round(height, 3),
                     "mesh": f"meshes/{stem}.obj"})
    write_image(out / "bodies.png", contact_sheet(tiles, labels, columns=4))

    gap = (full.joints - train.joints).norm(dim=-1).max().item() * 1000
    summary = {
        "model": {"name": full_body.name, "vertices_full": full_body.num_vertices,
                  "vertices_train": train_body.num_vertices, "joints": full_body.num_joints,
                  "betas": full_body.num_betas},
        "forward_ms": {"full": round(t_full * 1000, 2), "decimated": round(t_train * 1000, 2),
                       "batch": num_bodies},
        "max_joint_gap_full_vs_decimated_mm": round(gap, 4),
        "bodies": rows,
        "picture": "bodies.png",
    }
    atomic_write_text(out / "index.json", json.dumps(summary, indent=2))
    _print_table(summary, out)
    return summary


def _print_table(summary: dict, out: Path) -> None:
    m = summary["model"]
    print(f"Anny-24 ({m['name']}): {m['vertices_full']} vertices (training mesh "
          f"{m['vertices_train']}), {m['joints']} joints, {m['betas']} shape coefficients")
    f, gap = summary["forward_ms"], summary["max_joint_gap_full_vs_decimated_mm"]
    print(f"forward of {f['batch']} bodies: full mesh {f['full']} ms, "
          f"decimated {f['decimated']} ms; joints of the two meshes agree within {gap} mm")
    print("\n| body | pose | height (m) | mesh |\n| --- | --- | --- | --- |")
    for r in summary["bodies"]:
        print(f"| {r['body']} | {r['pose']} | {r['height_m']:.3f} | {r['mesh']} |")
    print(f"\nwrote {out / 'bodies.png'}, meshes in {out / 'meshes'}, {out / 'index.json'}")
