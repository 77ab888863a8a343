"""The README's demo on the embedded default: synthetic scenes in, meshes and metrics out.

``hmrkit demo`` renders a few synthetic scenes (Anny-24 people, full labels; a seed stream
apart from the training and benchmark data), runs hmrkit's best shipped model on every
person, and writes next to the ground truth: the input image, the predicted and the true
mesh over it, side views of both, and the meshes (OBJ, PLY, GLB); then it prints the metrics
of the model and of the mean-pose floor on these people. The shipped model and the command
that trained it are described in ``docs/baselines.md``.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

DEMO_SEED = 1000
"""Scene seed of the demo (synth-v1 uses 1, the training data 0)."""


def shipped_model_path() -> Path:
    """Path of the shipped default model (:data:`hmrkit.models.weights.DEFAULT_MODEL`)."""
    from hmrkit.models.weights import DEFAULT_MODEL

    return DEFAULT_MODEL


def _world_vertices(est, gt, batch) -> tuple[np.ndarray, np.ndarray] | None:
    """Predicted and true meshes in the world frame (y up), each person at its root's position
    seen from the camera (``R_cam (J_0 + t)``, the rotation estimated or known); None when the
    estimate has no world orientation."""
    world = est.world_output()
    if world is None or est.camera is None or est.camera.cam_to_world is None:
        return None
    from hmrkit.geometry.cameras import world_root_relative

    R_pred = est.camera.cam_to_world.double()
    root = (est.joints[:, 0] + est.transl).double()
    pred = world.vertices.double() + (R_pred @ root[..., None])[..., 0][:, None]
    R_true = batch["camera/to_world"].double()
    turn = batch["world_global_orient"].double() @ batch["global_orient"].double().transpose(1, 2)
    true_root = gt.joints[:, 0].double() + batch["transl"].double()
    true = world_root_relative(gt.vertices.double(), gt.joints[:, 0].double(), turn)
    true = true + (R_true @ true_root[..., None])[..., 0][:, None]
    return pred.numpy(), true.numpy()


def run_demo(out: str | Path = "demo_out", scenes: int = 6, seed: int = 0,
             checkpoint: str | Path | None = None, tile_size: int = 240,
             refiner: str | None = None, refiner_args: list[str] | None = None) -> dict:
    """Run the demo; returns the summary that it also writes to ``out/index.json``.
    ``refiner`` (a name, with ``refiner_args`` ``key=value`` options) refines the model's
    estimates (both rows of the metrics: the model alone and refined)."""
    from hmrkit.data.shards import ShardReader, decode_image, write_split
    from hmrkit.data.synthetic.scene import SceneConfig, generate_record
    from hmrkit.evaluate import dataset_for, evaluate, markdown_table
    from hmrkit.geometry.cameras import Camera
    from hmrkit.io import atomic_write_text, save_mesh
    from hmrkit.models.checkpoints import load_method
    from hmrkit.models.registry import make_refiner, method_class
    from hmrkit.render.draw import (
        contact_sheet,
        render_overlay,
        render_side,
        render_world,
        tile,
        write_image,
    )

    out = Path(out)
    start = time.perf_counter()
    config = SceneConfig(seed=DEMO_SEED + seed, split="test")
    write_split(functools.partial(generate_record, config), scenes, out / "scenes",
                shard_size=max(scenes, 1), progress=False, overwrite=True)
    checkpoint = Path(checkpoint) if checkpoint else shipped_model_path()
    model = load_method(checkpoint)
    stage = make_refiner(refiner, refiner_args) if refiner else None
    extra = ("meta/index", *(stage.input_keys() if stage is not None else ()))
    dataset = dataset_for(model, out / "scenes", extra_keys=extra)
    metrics = {checkpoint.stem: evaluate(model, dataset, progress=False)}
    if stage is not None:
        metrics[f"{checkpoint.stem} + {refiner}"] = evaluate(model, dataset, progress=False,
                                                             refiner=stage)
    metrics["mean pose"] = evaluate(method_class("mean-pose")(), dataset, progress=False)

    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(dataset))))
    with torch.no_grad():
        est = model.infer(batch, stage)
        gt = model.labels.pose(batch)
    pred_verts = (est.vertices + est.transl[:, None]).double().numpy()
    true_verts = (gt.vertices + batch["transl"][:, None]).double().numpy()
    true_camera = Camera.from_sample(batch)
    pred_camera = est.camera_or(true_camera).to(torch.float64)
    world = _world_vertices(est, gt, batch)  # None unless the method has a world output
    faces = model.body.faces.numpy()
    reader = ShardReader(next((out / "scenes").glob("shard-*.tar")))
    record = batch["meta/index"][:, 1].numpy()
    tiles, labels, rows = [], [], []
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    for r in np.unique(record):
        people = np.nonzero(record == r)[0]
        image = decode_image(reader.read(int(r), ["image.jpg"])["image.jpg"])
        size = (image.shape[1], image.shape[0])
        pred = [pred_verts[i] for i in people]
        true = [true_verts[i] for i in people]
        scene_camera = true_camera[int(people[0])]
        seen_by = scene_camera if est.camera is None else pred_camera[people.tolist()]
        views = [image, render_overlay(image, pred, faces, seen_by),
                 render_overlay(image, true, faces, scene_camera),
                 render_side(pred, faces, size),
                 render_side(true, faces, size)]
        names = ["image", "pred", "true", "pred_side", "true_side"]
        captions = [f"scene{r:02d}", "predicted", "ground truth", "predicted, side",
                    "truth, side"]
        if world is not None:  # people on the ground plane, in the world frame
            views += [render_world([world[0][i] for i in people], faces, size),
                      render_world([world[1][i] for i in people], faces, size)]
            names += ["pred_world", "true_world"]
            captions += ["predicted, world", "truth, world"]
        stem = f"scene{r:02d}"
        for name, view in zip(names, views, strict=True):
            write_image(out / f"{stem}_{name}.png", view)
        tiles += [tile(v, tile_size) for v in views]
        labels += captions
        for k, i in enumerate(people):
            for kind, verts in (("pred", pred_verts[i]), ("true", true_verts[i])):
                for fmt in ("obj", "ply", "glb"):
                    save_mesh(out / "meshes" / f"{stem}_p{k}_{kind}.{fmt}", verts, faces)
        rows.append({"scene": stem, "persons": len(people)})
    write_image(out / "demo.png", contact_sheet(tiles, labels, columns=5 if world is None else 7))
    table = markdown_table(metrics)
    summary = {
        "model": str(checkpoint), "scenes": rows, "persons": len(dataset),
        "metrics": {k: v["overall"] for k, v in metrics.items()},
        "refiner": refiner, "seconds": round(time.perf_counter() - start, 1),
        "picture": "demo.png",
    }
    atomic_write_text(out / "metrics.md", table)
    atomic_write_text(out / "index.json", json.dumps(summary, indent=2))
    print(f"{len(dataset)} people in {len(rows)} synthetic scenes, model {checkpoint.name} "
          f"(CPU, {summary['seconds']} s in all). Errors in mm (lsp14 protocol):\n")
    print(table)
    print(f"wrote {out / 'demo.png'} (image | predicted | ground truth | side views), "
          f"meshes in {out / 'meshes'}, {out / 'metrics.md'}, {out / 'index.json'}")
    return summary
