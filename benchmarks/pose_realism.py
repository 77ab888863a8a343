"""How close are the synthetic people to real motion?  Pose statistics side by side.

    apt-get install assimp-testmodels                    # CMU BVH clips 01_01, 01_03 (BSD-3)
    pip download pybullet==3.2.7 --no-deps -d /tmp/pyb   # DeepMimic humanoid3d clips (zlib)
    python benchmarks/pose_realism.py --pybullet-wheel /tmp/pyb/pybullet-3.2.7-*.whl

Rows: the people of the synth-v1 benchmark (the first pose distribution), of synth-v2 (the
photo-like mix, :mod:`hmrkit.data.synthetic.mix`), the two CMU clips (subject 01, 30 Hz) and
the 15 DeepMimic clips.  Every row goes through the same code: SMPL-24 joint positions in a
y-up world, turned to face +z, then

- angles from the joint positions (degrees): knee and elbow flexion (angle between the two
  bones), hip flexion (thigh against the trunk's down axis in the sagittal plane, positive
  forward), shoulder elevation (upper arm against the trunk's down axis), trunk flexion
  (pelvis -> neck against the vertical); 5th / 50th / 95th percentiles, both sides pooled;
- standing-like: knees and hips under 30 degrees, trunk under 20; deep bends: a knee over
  70 degrees, a hip over 60, an arm raised over 120 (the definitions of notes/poses.md);
- spread: mean distance (mm) of the 12 limb joints to the row's mean pose, each pose centred
  on the pelvis and scaled to Anny-24's limb length;
- coverage: for every real frame, the nearest pose of the row (same normalisation), mean mm;
- limits and self-intersection: the positions retargeted to Anny-24 rotations
  (:func:`hmrkit.data.motion.place_torso`, then
  :func:`hmrkit.data.motion.rotations_from_positions`), then the fraction of poses with a
  joint more than 1 degree outside :data:`~hmrkit.data.synthetic.poses.JOINT_LIMITS` and the
  fraction :class:`~hmrkit.data.synthetic.poses.SelfIntersection` flags (mean shape).  For the
  synthetic rows the retarget's own error shows in the limit column (their true rotations
  are within limits by construction) and the intersection rate of the true rotations is
  given too.

A second table times the pose draws with and without self-intersection rejection.
"""

from __future__ import annotations

import argparse
import glob
import time

import numpy as np
import torch

from hmrkit.body.keypoints import SMPL24_NAMES

J = {n: i for i, n in enumerate(SMPL24_NAMES)}
LIMB12 = [J[f"{s}_{p}"] for s in ("left", "right")
          for p in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
BONES = [(J[f"{s}_{a}"], J[f"{s}_{b}"]) for s in ("left", "right")
         for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"),
                      ("elbow", "wrist"))]


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _angle(a, b):
    return np.rad2deg(np.arccos(np.clip(np.sum(_unit(a) * _unit(b), -1), -1, 1)))


def face_front(P: np.ndarray) -> np.ndarray:
    """Poses (N, 24, 3) centred on the pelvis and turned about the vertical so that the hip
    axis (right -> left) points along +x (the body faces +z)."""
    P = P - P[:, :1]
    lat = P[:, J["left_hip"]] - P[:, J["right_hip"]]
    yaw = np.arctan2(lat[:, 2], lat[:, 0])  # rotate by +yaw about y: lat -> +x
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.zeros((len(P), 3, 3))
    R[:, 0, 0], R[:, 0, 2], R[:, 1, 1], R[:, 2, 0], R[:, 2, 2] = c, s, 1, -s, c
    return np.einsum("nij,nkj->nki", R, P)


def angle_stats(P: np.ndarray) -> dict[str, np.ndarray]:
    up = _unit(P[:, J["neck"]] - P[:, J["pelvis"]])
    lat = P[:, J["left_hip"]] - P[:, J["right_hip"]]
    lat = _unit(lat - np.sum(lat * up, -1, keepdims=True) * up)
    fwd = np.cross(lat, up)
    out = {"knee": [], "hip": [], "elbow": [], "shoulder": []}
    for s in ("left", "right"):
        thigh = P[:, J[f"{s}_knee"]] - P[:, J[f"{s}_hip"]]
        shin = P[:, J[f"{s}_ankle"]] - P[:, J[f"{s}_knee"]]
        upper = P[:, J[f"{s}_elbow"]] - P[:, J[f"{s}_shoulder"]]
        fore = P[:, J[f"{s}_wrist"]] - P[:, J[f"{s}_elbow"]]
        out["knee"].append(_angle(thigh, shin))
        out["elbow"].append(_angle(upper, fore))
        out["hip"].append(np.rad2deg(np.arctan2(np.sum(thigh * fwd, -1),
                                                -np.sum(thigh * up, -1))))
        out["shoulder"].append(_angle(upper, -up))
    stats = {k: np.stack(v, 1) for k, v in out.items()}  # (N, 2)
    stats["trunk"] = _angle(up, np.array([0.0, 1.0, 0.0]))
    return stats


def normalised_limbs(P: np.ndarray, limb_length: float) -> np.ndarray:
    """(N, 12, 3) limb joints, pelvis-centred, scaled to ``limb_length`` (sum of 8 bones)."""
    length = sum(np.linalg.norm(P[:, a] - P[:, b], axis=-1) for a, b in BONES)
    return P[:, LIMB12] * (limb_length / length)[:, None, None]


def nearest_error(query: np.ndarray, pool: np.ndarray) -> float:
    """Mean over ``query`` poses (N, 12, 3) of the mean joint error to the nearest pool pose."""
    q = query.reshape(len(query), -1)
    best = np.full(len(q), np.inf)
    for start in range(0, len(pool), 2000):
        p = pool[start : start + 2000]
        d = np.linalg.norm(q[:, None].reshape(len(q), 1, 12, 3) - p[None], axis=-1).mean(-1)
        best = np.minimum(best, d.min(1))
    return float(best.mean())


def synthetic_people(name: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(world-frame root rotation + body pose) (N, 24, 3, 3) of the first ``count`` people of
    benchmark ``name``, drawn as its scenes draw them (no rendering)."""
    from hmrkit.data.synthetic.scene import BENCHMARKS, SceneEngine

    engine = SceneEngine(BENCHMARKS[name])
    rotations = []
    index = 0
    while len(rotations) < count:
        _, _, people = engine.compose(index)
        for p in people:
            rotations.append(np.concatenate([p["world_orient"][None], p["body_pose"]]))
        index += 1
    return np.stack(rotations[:count]), engine.stats


def joints_of(body, rotations: np.ndarray) -> np.ndarray:
    R = torch.as_tensor(rotations, dtype=torch.float64)
    with torch.no_grad():
        return body(R[:, 0], R[:, 1:]).joints.numpy()


def real_clips(bvh_dir: str, wheel: str | None) -> dict[str, np.ndarray]:
    from hmrkit.data.motion import cmu_bvh_to_smpl24, deepmimic_clips

    out = {}
    for clip in ("01_01", "01_03"):
        out[f"CMU {clip}"] = cmu_bvh_to_smpl24(f"{bvh_dir}/{clip}.bvh")[::4]  # 120 -> 30 Hz
    if wheel:
        clips = deepmimic_clips(wheel)
        out[f"DeepMimic ({len(clips)} clips)"] = np.concatenate(list(clips.values()))
    return out


def subsample(x: np.ndarray, n: int) -> np.ndarray:
    return x[np.linspace(0, len(x) - 1, min(n, len(x))).astype(int)]


def realism_table(args) -> None:
    from hmrkit.body import load_body_model
    from hmrkit.data.motion import anny24_hinges, place_torso, rotations_from_positions
    from hmrkit.data.synthetic.poses import SelfIntersection, limit_violation

    body = load_body_model("anny24", dtype=torch.float64)
    rest = body.rest()[1][0].numpy()
    hinges = anny24_hinges(rest)
    limb_length = float(sum(np.linalg.norm(rest[a] - rest[b]) for a, b in BONES))
    checker = SelfIntersection(body)

    rows: dict[str, dict] = {}
    for name in ("synth-v1", "synth-v2"):
        start = time.perf_counter()
        rotations, stats = synthetic_people(name, args.people)
        rows[name] = {"positions": joints_of(body, rotations), "rotations": rotations}
        print(f"# {name}: {len(rotations)} people in {time.perf_counter() - start:.0f} s "
              f"(support redraws {stats['support_redraws']}, fallbacks "
              f"{stats['support_fallbacks']})", flush=True)
    for name, positions in real_clips(args.bvh_dir, args.pybullet_wheel).items():
        rows[name] = {"positions": positions}
    real = [k for k in rows if not k.startswith("synth")]
    rows["real, pooled"] = {"positions": np.concatenate([rows[k]["positions"] for k in real])}

    normed = {k: normalised_limbs(face_front(r["positions"]), limb_length)
              for k, r in rows.items()}
    pooled_real = normed["real, pooled"]
    header = ("| poses | n | standing-like | knee > 70 | hip > 60 | arm > 120 | knee flexion | "
              "hip flexion | elbow flexion | "
              "shoulder elevation | trunk flexion | spread (mm) | real -> nearest (mm) | "
              "past a limit (retargeted) | self-intersecting (retargeted / true) |")
    print("\n" + header)
    print("|" + " --- |" * (header.count("|") - 1))
    for k, r in rows.items():
        P = face_front(r["positions"])
        a = angle_stats(P)
        standing = ((a["knee"].max(1) < 30) & (np.abs(a["hip"]).max(1) < 30)
                    & (a["trunk"] < 20)).mean()

        def q(x):
            lo, mid, hi = np.percentile(x, [5, 50, 95])
            return f"{mid:.0f} [{lo:.0f}, {hi:.0f}]"

        spread = np.linalg.norm(normed[k] - normed[k].mean(0), axis=-1).mean() * 1000
        cover = ("" if k == "real, pooled" else
                 f"{nearest_error(subsample(pooled_real, args.coverage), normed[k]) * 1000:.0f}")
        few = subsample(r["positions"], args.checks)
        retargeted = rotations_from_positions(place_torso(few, rest), rest, hinges)
        past = (limit_violation(retargeted)[:, 1:].max(1) > 1.0).mean()
        si = checker(retargeted).mean()
        si_true = (f" / {checker(subsample(r['rotations'], args.checks)).mean():.1%}"
                   if "rotations" in r else "")
        deep = (f"{(a['knee'].max(1) > 70).mean():.0%} | {(a['hip'].max(1) > 60).mean():.0%} | "
                f"{(a['shoulder'].max(1) > 120).mean():.0%}")
        print(f"| {k} | {len(P)} | {standing:.0%} | {deep} | {q(a['knee'])} | {q(a['hip'])} | "
              f"{q(a['elbow'])} | {q(a['shoulder'])} | {q(a['trunk'])} | {spread:.0f} | "
              f"{cover} | {past:.1%} | {si:.1%}{si_true} |", flush=True)


def cost_table(args) -> None:
    from hmrkit.data.synthetic.mix import MixSampler
    from hmrkit.data.synthetic.poses import PoseSampler, SelfIntersection

    checker = SelfIntersection()
    n = args.cost_poses
    print("\n| pose draw (mean shape, decimated mesh) | ms per accepted pose | redrawn |")
    print("| --- | ---: | ---: |")
    for label, make in (
        ("v1 sampler", lambda: PoseSampler(seed=0)),
        ("v1 sampler + self-intersection rejection",
         lambda: PoseSampler(seed=0, reject_self_intersection=True, body=checker)),
        ("photo mix", lambda: MixSampler(seed=0, reject_self_intersection=False)),
        ("photo mix + self-intersection rejection", lambda: MixSampler(seed=0, body=checker)),
    ):
        sampler = make()
        start = time.perf_counter()
        for _ in range(n):  # one at a time, as the scene engine draws them
            sampler.sample(1) if isinstance(sampler, MixSampler) else sampler.sample_numpy(1)
        ms = (time.perf_counter() - start) / n * 1000
        stats = sampler.stats
        redrawn = stats["intersection_rejected"] / max(stats["drawn"], 1)
        print(f"| {label} | {ms:.2f} | {redrawn:.1%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000, help="people per synthetic row")
    parser.add_argument("--bvh-dir", default="/usr/share/assimp/models/BVH")
    parser.add_argument("--pybullet-wheel", default=next(iter(sorted(glob.glob(
        "/tmp/pyb/pybullet-3.2.7-*.whl"))), None), help="pybullet 3.2.7 wheel (DeepMimic clips)")
    parser.add_argument("--checks", type=int, default=1000,
                        help="poses per row for the limit and self-intersection columns")
    parser.add_argument("--coverage", type=int, default=2000, help="real frames for coverage")
    parser.add_argument("--cost-poses", type=int, default=300)
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    realism_table(args)
    if not args.skip_cost:
        cost_table(args)


if __name__ == "__main__":
    main()
