"""hmrkit's BlazePose pipeline against MediaPipe's own (``mediapipe==0.10.14``), end to end.

MediaPipe is not an hmrkit dependency (it pins protobuf < 5 and brings a second OpenCV), so the
reference runs in a separate environment:

    python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.14 scikit-image
    /tmp/mpvenv/bin/python benchmarks/blazepose_vs_mediapipe.py reference --out /tmp/mp_ref.npz
    .venv/bin/python benchmarks/blazepose_vs_mediapipe.py compare --ref /tmp/mp_ref.npz

Images: scikit-image's public-domain astronaut and CC0 camera photos, plus rotated, padded,
letterboxed, upscaled and upside-down versions of them (8 images, one person each).
``reference`` records MediaPipe's legacy ``Pose(static_image_mode=True, model_complexity=1)``
landmarks and world landmarks, and its detection ROI (through the graph's
``pose_rect_from_detection`` stream). ``compare`` runs the landmark network on MediaPipe's ROI
(checks the crop conventions; once more with a crop half a pixel off, hmrkit's plain
``crop_matrix``, to show how much that matters) and the whole hmrkit pipeline (detector
included), and reports the 2D distance of the landmarks MediaPipe calls visible (> 0.5), in
pixels.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np


def images() -> list[np.ndarray]:
    from skimage import data

    a = data.astronaut()
    c = np.repeat(data.camera()[..., None], 3, axis=2)

    def rotated(im, deg, pad):
        im = cv2.copyMakeBorder(im, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(90, 90, 90))
        h, w = im.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        return cv2.warpAffine(im, m, (w, h), borderValue=(90, 90, 90))

    tall = cv2.copyMakeBorder(c, 200, 350, 0, 0, cv2.BORDER_CONSTANT, value=(200, 200, 200))
    return [a, c, rotated(a, 25, 100), rotated(a, -40, 150), rotated(c, 15, 120),
            cv2.copyMakeBorder(a, 0, 0, 300, 100, cv2.BORDER_CONSTANT, value=(40, 80, 40)),
            cv2.resize(tall, None, fx=1.7, fy=1.7), np.ascontiguousarray(a[::-1, ::-1])]


def reference(out: str) -> None:
    import mediapipe as mp
    from mediapipe.python.solution_base import SolutionBase

    result = {}
    graph = SolutionBase(
        binary_graph_path="mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb",
        side_inputs={"model_complexity": 1, "smooth_landmarks": False,
                     "enable_segmentation": False, "smooth_segmentation": False,
                     "use_prev_landmarks": False},
        calculator_params={
            "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": 0.2},
        outputs=["pose_rect_from_detection"])
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                min_detection_confidence=0.2) as pose:
        for i, im in enumerate(images()):
            h, w = im.shape[:2]
            r = pose.process(im)
            if r.pose_landmarks is None:
                continue
            result[f"landmarks_{i}"] = np.array(
                [[p.x * w, p.y * h, p.visibility] for p in r.pose_landmarks.landmark])
            result[f"world_{i}"] = np.array(
                [[p.x, p.y, p.z] for p in r.pose_world_landmarks.landmark])
            rect = graph.process(im).pose_rect_from_detection
            result[f"roi_{i}"] = np.array([rect.x_center * w, rect.y_center * h,
                                           rect.width * w, rect.rotation])
    np.savez(out, **result)
    print(f"wrote {out}: {len(result) // 3} images with a pose")


def compare(ref_path: str) -> None:
    import torch

    from hmrkit.blazepose import BlazePose
    from hmrkit.blazepose.landmarks import refine_from_heatmaps
    from hmrkit.blazepose.roi import NETWORK_PIXEL_OFFSET, crop_affine, crop_to_image, warp_crops
    from hmrkit.geometry.crops import crop_matrix

    torch.set_num_threads(1)
    ref = np.load(ref_path)
    bp = BlazePose("full", min_score=0.2)
    same_roi, plain_roi, end_to_end, world = [], [], [], []
    for i, im in enumerate(images()):
        if f"landmarks_{i}" not in ref.files:
            continue
        truth = ref[f"landmarks_{i}"]
        vis = truth[:, 2] > 0.5
        x, y, size, r = ref[f"roi_{i}"]
        # MediaPipe's pixels are OpenCV's (centres at integers): hmrkit's minus one half
        center = torch.tensor([[x + 0.5, y + 0.5]], dtype=torch.float64)
        args = (torch.tensor([size], dtype=torch.float64), torch.tensor([-r], dtype=torch.float64))
        # hmrkit's crop (MediaPipe's half-pixel sampling) and, to show that it matters, the
        # plain crop_matrix sampling with the network's outputs read as continuous pixels
        for errs, affine, offset in (
                (same_roi, crop_affine(center, *args), NETWORK_PIXEL_OFFSET),
                (plain_roi, crop_matrix(center, args[0], 256, args[1]), 0.0)):
            crop = torch.from_numpy(warp_crops(im, affine, 256)).permute(0, 3, 1, 2)
            with torch.no_grad():
                out = bp.landmark_net(crop.float() / 255)
            xy = refine_from_heatmaps(out["landmarks"][..., :2].double(),
                                      out["heatmap_logits"].double()) + offset
            lm = crop_to_image(xy, affine)[0, :33].numpy() - 0.5
            errs.append(np.linalg.norm(lm - truth[:, :2], axis=1)[vis])
        people = bp.detect(im)
        if not people:
            print(f"image {i}: hmrkit finds no person")
            continue
        p = people[0]
        end_to_end.append(np.linalg.norm(p.landmarks[:, :2] - 0.5 - truth[:, :2], axis=1)[vis])
        world.append(1000 * np.linalg.norm(p.world - ref[f"world_{i}"], axis=1)[vis])
    for name, errs in (("landmark network on MediaPipe's ROI", same_roi),
                       ("same, plain crop_matrix sampling (no half pixel)", plain_roi),
                       ("whole pipeline (own detection and ROI)", end_to_end)):
        e = np.concatenate(errs)
        print(f"{name}: {len(e)} visible landmarks of {len(errs)} images: mean {e.mean():.2f} px,"
              f" median {np.median(e):.2f}, 95th percentile {np.percentile(e, 95):.2f}, "
              f"max {e.max():.2f}")
    w = np.concatenate(world)
    print(f"world landmarks, whole pipeline: mean {w.mean():.1f} mm, median {np.median(w):.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("reference", "compare"))
    ap.add_argument("--out", default="/tmp/mp_ref.npz")
    ap.add_argument("--ref", default="/tmp/mp_ref.npz")
    args = ap.parse_args(argv)
    reference(args.out) if args.what == "reference" else compare(args.ref)


if __name__ == "__main__":
    main()
