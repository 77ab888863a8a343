"""The one person-crop builder (hmrkit.data.images.person_crop) and image reading."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from hmrkit.data.augment import AugmentConfig, AugmentParams, occluder_layer, sample_augmentation
from hmrkit.data.images import ImageReadError, person_crop, read_image, warp
from hmrkit.data.rois import multi_roi_boxes
from hmrkit.geometry.crops import crop_matrix


def dots(h=240, w=320):
    """A black RGB image with a coloured dot centred on known pixels."""
    image = np.zeros((h, w, 3), np.uint8)
    spots = {"red": ((80, 60), (255, 0, 0)), "green": ((200, 150), (0, 255, 0))}
    for (x, y), color in spots.values():
        cv2.circle(image, (x, y), 4, color, -1)
    return image, {k: np.array(v[0], np.float64) + 0.5 for k, v in spots.items()}


def brightest(crop: np.ndarray, channel: int) -> np.ndarray:
    """(x, y) intensity centroid of one channel of a (3, S, S) crop, in hmrkit pixels (pixel
    centres at i + 0.5)."""
    w = crop[channel].astype(np.float64)
    y, x = np.indices(w.shape) + 0.5
    return np.array([(w * x).sum(), (w * y).sum()]) / w.sum()


@pytest.mark.parametrize("rotation", [None, 0.6])
def test_dots_land_where_the_affine_says(rotation):
    """The crop of an (optionally rotated) box shows every dot where ``crop_affine`` maps it,
    RoIs included, and the affine maps back to the full image."""
    image, where = dots()
    cut = person_crop(image, (140.0, 110.0), 200.0, 64, rois=3, rotation=rotation)
    keys = cut.sample_keys(rois=True)
    assert keys["image"].shape == (3, 64, 64) and keys["rois/image"].shape == (3, 3, 64, 64)
    assert ("box_rotation" in keys) == (rotation is not None)
    np.testing.assert_array_equal(keys["rois/image"][0], keys["image"])
    centers, sizes = multi_roi_boxes(np.array([[140.0, 110.0]]), np.array([200.0]), m=3)
    np.testing.assert_allclose(keys["rois/box_size"], sizes[0])
    for m in range(3):
        affine = keys["rois/crop_affine"][m]
        rot = None if rotation is None else torch.tensor([rotation], dtype=torch.float64)
        np.testing.assert_allclose(affine, crop_matrix(torch.from_numpy(centers[0, m:m + 1]),
                                                       sizes[0, m], 64, rot)[0].numpy())
        red = affine[:, :2] @ where["red"] + affine[:, 2]
        if (red >= 6).all() and (red < 58).all():
            assert np.abs(brightest(keys["rois/image"][m], 0) - red).max() <= 0.25
    back = cut.box.to_full(torch.tensor([[[32.0, 32.0]]], dtype=torch.float64).expand(3, 1, 2))
    np.testing.assert_allclose(back[0, 0].numpy(), [140.0, 110.0], atol=1e-9)


def test_source_affine_bgr_and_gain():
    """A view change of the stored image, OpenCV channel order and the colour gain."""
    image, where = dots()
    source = np.array([[-1.0, 0.0, 320.0], [0.0, 1.0, 0.0]])  # a mirror x -> W - x
    mirrored_red = np.array([320.0 - where["red"][0], where["red"][1]])
    cut = person_crop(image[..., ::-1].copy(), mirrored_red, 60.0, 32, source=source, bgr=True,
                      gain=(0.5, 1.0, 1.0))
    crop = cut.sample_keys(rois=False)["image"]
    assert np.abs(brightest(crop, 0) - 16.0).max() <= 0.25  # the red dot, centred
    assert crop[0].max() == pytest.approx(0.5, abs=1e-6) and crop[1].max() < 0.1
    np.testing.assert_allclose(cut.from_stored[0], cut.box.matrix[0].numpy() @ np.vstack(
        [source, [0, 0, 1]]))
    bright = person_crop(image, where["red"], 60.0, 32, gain=(3.0, 1.0, 1.0)).images[0]
    assert bright.max() == 1.0  # clipped


def test_occluders_cover_every_roi():
    image, _ = dots()
    cfg = AugmentConfig(occlusion_prob=1.0, occlusion_count=(2, 2), occlusion_textured=0.5)
    params = sample_augmentation(np.random.default_rng(4), cfg)
    layer = occluder_layer(params, 64)
    covered = np.zeros((64, 64), bool)
    for o in params.occluders:
        covered[round(o.y0 * 64) : round(o.y1 * 64), round(o.x0 * 64) : round(o.x1 * 64)] = True
    np.testing.assert_array_equal(layer[..., 3] > 0, covered)
    assert occluder_layer(AugmentParams(), 64) is None
    cut = person_crop(image, (160.0, 120.0), 100.0, 64, rois=2, occluders=layer)
    np.testing.assert_allclose(cut.images[0].transpose(1, 2, 0)[covered], layer[..., :3][covered])
    # RoI 1 (1.5x the box, shifted) shows the occluders moved by the RoI -> RoI map
    to_1 = cut.from_stored[1] @ np.linalg.inv(np.vstack([cut.from_stored[0], [0, 0, 1]]))
    moved = warp(layer, to_1, 64, "nearest")
    hidden = moved[..., 3] > 0
    np.testing.assert_allclose(cut.images[1].transpose(1, 2, 0)[hidden], moved[..., :3][hidden])


def test_strong_downscales_are_area_averaged():
    """A pattern of 1-pixel stripes cropped ~7.5x smaller: area averaging gives flat grey, plain
    bilinear sampling aliases (what the synthetic reader keeps, see person_crop)."""
    stripes = ((np.arange(512) % 3 == 0) * 255).astype(np.uint8)
    image = np.repeat(np.broadcast_to(stripes, (512, 512))[..., None], 3, axis=2).copy()
    smooth = person_crop(image, (256.0, 256.0), 480.0, 64).images[0]
    sharp = person_crop(image, (256.0, 256.0), 480.0, 64, area_downscale=False).images[0]
    assert abs(smooth[:, 8:-8, 8:-8].mean() - 1 / 3) < 0.02
    assert smooth[:, 8:-8, 8:-8].std() < 0.06 and sharp[:, 8:-8, 8:-8].std() > 0.25
    geometry = person_crop(None, (256.0, 256.0), 512.0, 64)
    assert geometry.images is None and "image" not in geometry.sample_keys(rois=False)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png.*file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"bad\.png.*not a decodable image"):
        read_image(tmp_path / "bad.png")
    grey = np.full((5, 7), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    assert read_image(tmp_path / "grey.png").shape == (5, 7, 3)
    assert math.isclose(float(read_image(tmp_path / "grey.png").mean()), 200.0)
