"""BlazePose front end: every person in an image -> 33 landmarks, world landmarks, mask.

>>> from hmrkit.blazepose import BlazePose
>>> people = BlazePose(variant="full").detect(image_rgb)     # (H, W, 3) uint8 RGB
>>> people[0].landmarks        # (33, 3): x, y in full-image pixels, z (same scale, hip-centred)
>>> people[0].world            # (33, 3) metres, hip-centred
>>> people[0].mask_image(w, h) # person probability in full-image pixels

Steps (MediaPipe's graph, with every detection kept rather than the first): letterbox to
224x224 -> detector -> decode all 2254 anchors -> score threshold -> weighted NMS ->
rotated-square ROI per detection -> 256x256 crops -> landmark network on all crops of all
images in one batch -> heatmap refinement -> full-image landmarks through the inverse crop
affine. Both networks run in torch (CPU or CUDA) from the converted files of
``python -m hmrkit.blazepose fetch``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .assets import load_model
from .detector import (
    decode_detections,
    non_max_suppression,
    ssd_anchors,
    weighted_non_max_suppression,
)
from .landmarks import LandmarkNet, refine_from_heatmaps, rotate_world
from .names import NUM_LANDMARKS
from .roi import (
    DETECTOR_RES,
    LANDMARK_RES,
    NETWORK_PIXEL_OFFSET,
    ROI_SCALE,
    crop_affine,
    crop_to_image,
    detection_roi,
    letterbox_affine,
    warp_crops,
    warp_to_image,
)

__all__ = ["BlazePose", "Detection", "Person"]


@dataclass
class Detection:
    """One detector output in full-image pixels.

    ``box``: the face box ``(xmin, ymin, xmax, ymax)``; ``keypoints (4, 2)``: hip centre,
    full-body size/rotation point, shoulder centre, upper-body point; ``score`` in [0, 1].
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float


@dataclass
class Person:
    """BlazePose's estimate for one detected person (numpy arrays, float32).

    Attributes:
        detection: the :class:`Detection` the crop was made from.
        presence: the landmark network's pose-presence probability.
        center, size, rotation: the crop ROI (full-image pixels, radians as in
            :func:`hmrkit.geometry.crops.crop_matrix`).
        crop_affine: ``(2, 3)`` full-image -> 256x256 crop pixels.
        landmarks: ``(33, 3)`` x, y in full-image pixels; z the network's relative depth
            scaled like x (hip-centred, smaller is closer to the camera).
        visibility, landmark_presence: ``(33,)`` probabilities.
        world: ``(33, 3)`` metric landmarks (metres, hip-centred; x right, y down, z away
            from the camera in the image's orientation).
        mask: ``(256, 256)`` person probability in the crop frame (see :meth:`mask_image`).
        heatmaps: ``(33, 64, 64)`` heatmap logits in the crop frame (cell ``i`` at crop pixel
            ``4 i``, MediaPipe's convention).
        crop_landmarks: ``(33, 3)`` landmarks in crop pixels (after refinement).
    """

    detection: Detection
    presence: float
    center: np.ndarray
    size: float
    rotation: float
    crop_affine: np.ndarray
    landmarks: np.ndarray
    visibility: np.ndarray
    landmark_presence: np.ndarray
    world: np.ndarray
    mask: np.ndarray
    heatmaps: np.ndarray
    crop_landmarks: np.ndarray

    def mask_image(self, width: int, height: int) -> np.ndarray:
        """The person mask ``(height, width)`` in full-image pixels (0 outside the crop)."""
        return warp_to_image(self.mask, torch.from_numpy(self.crop_affine), width, height)


def _as_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"BlazePose: image has shape {image.shape}, expected (H, W, 3) RGB")
    if image.dtype != np.uint8:
        raise ValueError(f"BlazePose: image has dtype {image.dtype}, expected uint8 RGB")
    return np.ascontiguousarray(image[..., :3])


class BlazePose:
    """BlazePose GHUM detector + landmark network on every person of an image.

    Args:
        variant: landmark network, ``"lite"``, ``"full"`` or ``"heavy"``.
        directory: model folder (default ``$HMRKIT_BLAZEPOSE_DIR``, then the user cache).
        device: torch device for both networks.
        min_score: detector score threshold (MediaPipe's graph uses 0.2 for its single
            best detection; 0.5 keeps spurious people out when all are kept).
        nms_threshold: IoU above which detections are merged / suppressed.
        nms: ``"weighted"`` (MediaPipe) or ``"plain"`` (greedy).
        min_presence: people whose pose presence is below are dropped (MediaPipe: 0.5).
        refine: refine landmarks from the heatmaps as MediaPipe does.
        max_people: keep at most this many detections per image (best first).
    """

    def __init__(self, variant: str = "full", directory: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", min_score: float = 0.5,
                 nms_threshold: float = 0.3, nms: str = "weighted", min_presence: float = 0.5,
                 refine: bool = True, max_people: int | None = None):
        if nms not in ("weighted", "plain"):
            raise ValueError(f"nms must be 'weighted' or 'plain', not {nms!r}")
        self.device = torch.device(device)
        self.detector = load_model("detector", directory).eval().to(self.device)
        self.landmark_net = LandmarkNet(load_model(variant, directory)).eval().to(self.device)
        self.anchors = ssd_anchors().to(self.device)
        self.variant = variant
        self.min_score, self.nms_threshold, self.nms = min_score, nms_threshold, nms
        self.min_presence, self.refine, self.max_people = min_presence, refine, max_people

    # --- detection
    @torch.no_grad()
    def detect_people(self, images) -> list[list[Detection]]:
        """Detections of each image of ``images`` (a list of ``(H, W, 3)`` uint8 RGB)."""
        images = [_as_rgb(im) for im in images]
        if not images:
            return []
        affines = [letterbox_affine(im.shape[1], im.shape[0]) for im in images]
        inputs = np.concatenate([warp_crops(im, a, DETECTOR_RES, border="zero")
                                 for im, a in zip(images, affines, strict=True)])
        x = torch.from_numpy(inputs).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        out = self.detector(x)
        raw_boxes, raw_scores = sorted(out.values(), key=lambda t: -t.shape[-1])
        boxes, kps, scores = decode_detections(raw_boxes, raw_scores, self.anchors,
                                               scale=float(DETECTOR_RES))
        result = []
        for i, aff in enumerate(affines):
            keep = scores[i] >= self.min_score
            b, k, s = boxes[i][keep], kps[i][keep], scores[i][keep]
            if self.nms == "weighted":
                b, k, s = weighted_non_max_suppression(b, k, s, self.nms_threshold)
            else:
                idx = non_max_suppression(b, s, self.nms_threshold)
                b, k, s = b[idx], k[idx], s[idx]
            if self.max_people is not None:
                b, k, s = b[: self.max_people], k[: self.max_people], s[: self.max_people]
            inv = aff.to(self.device)
            pts = torch.cat([b.reshape(-1, 2, 2), k], 1).double() * DETECTOR_RES
            pts = pts + NETWORK_PIXEL_OFFSET
            pts = crop_to_image(pts.reshape(1, -1, 2), inv).reshape(len(s), 6, 2).cpu().numpy()
            result.append([Detection(box=p[:2].reshape(4).astype(np.float32),
                                     keypoints=p[2:].astype(np.float32), score=float(sc))
                           for p, sc in zip(pts, s.cpu().numpy(), strict=True)])
        return result

    # --- landmarks
    def make_crops(self, images, detections: list[list[Detection]]) -> dict:
        """The 256x256 crops of all detections: ``crops (N, 3, 256, 256)`` RGB in [0, 1] on
        the device, ``affines (N, 2, 3)`` full -> crop, ``center``, ``size``, ``rotation``
        (float64) and ``owners`` (image index of each crop)."""
        images = [_as_rgb(im) for im in images]
        owners, kps = [], []
        for i, dets in enumerate(detections):
            for d in dets:
                owners.append(i)
                kps.append(torch.as_tensor(d.keypoints, dtype=torch.float64))
        if not kps:
            empty = torch.zeros(0, dtype=torch.float64)
            return {"crops": torch.zeros(0, 3, LANDMARK_RES, LANDMARK_RES, device=self.device),
                    "affines": empty.reshape(0, 2, 3), "center": empty.reshape(0, 2),
                    "size": empty, "rotation": empty, "owners": []}
        center, size, rotation = detection_roi(torch.stack(kps), scale=ROI_SCALE)
        affines = crop_affine(center, size, rotation, LANDMARK_RES)
        crops = np.concatenate([
            warp_crops(images[i], affines[j:j + 1], LANDMARK_RES) for j, i in enumerate(owners)
        ])
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return {"crops": x, "affines": affines, "center": center, "size": size,
                "rotation": rotation, "owners": owners}

    @torch.no_grad()
    def estimate(self, images, detections: list[list[Detection]]) -> list[list[Person]]:
        """Landmarks for given detections (one list per image), all crops in one batch."""
        batch = self.make_crops(images, detections)
        people: list[list[Person]] = [[] for _ in images]
        owners = batch["owners"]
        if not owners:
            return people
        affines, center = batch["affines"], batch["center"]
        size, rotation = batch["size"], batch["rotation"]
        out = self.landmark_net(batch["crops"])
        lm = out["landmarks"].double()
        xy = lm[..., :2]
        if self.refine:
            xy = refine_from_heatmaps(xy, out["heatmap_logits"].double(), LANDMARK_RES)
        crop_lm = torch.cat([xy + NETWORK_PIXEL_OFFSET, lm[..., 2:3]], -1)[:, :NUM_LANDMARKS]
        full_xy = crop_to_image(crop_lm[..., :2], affines.to(self.device))
        full_z = crop_lm[..., 2] * (size.to(self.device)[:, None] / LANDMARK_RES)
        world = rotate_world(out["world"].double(), rotation.to(self.device))[:, :NUM_LANDMARKS]
        f32 = lambda t: t.float().cpu().numpy()  # noqa: E731
        vis = f32(torch.sigmoid(lm[:, :NUM_LANDMARKS, 3]))
        pres = f32(torch.sigmoid(lm[:, :NUM_LANDMARKS, 4]))
        landmarks = f32(torch.cat([full_xy, full_z[..., None]], -1))
        mask = f32(torch.sigmoid(out["mask_logits"]))
        heat = f32(out["heatmap_logits"][:, :NUM_LANDMARKS])
        presence = f32(out["presence"])
        world, crop_lm = f32(world), f32(crop_lm)
        dets = [d for ds in detections for d in ds]
        for j, i in enumerate(owners):
            if presence[j] < self.min_presence:
                continue
            people[i].append(Person(
                detection=dets[j], presence=float(presence[j]),
                center=f32(center[j]), size=float(size[j]), rotation=float(rotation[j]),
                crop_affine=f32(affines[j]), landmarks=landmarks[j], visibility=vis[j],
                landmark_presence=pres[j], world=world[j], mask=mask[j], heatmaps=heat[j],
                crop_landmarks=crop_lm[j],
            ))
        return people

    def detect_batch(self, images) -> list[list[Person]]:
        """Every person of every image (crops of all images in one landmark batch)."""
        return self.estimate(images, self.detect_people(images))

    def detect(self, image) -> list[Person]:
        """Every person in one ``(H, W, 3)`` uint8 RGB image, best detection first."""
        return self.detect_batch([image])[0]

    __call__ = detect
