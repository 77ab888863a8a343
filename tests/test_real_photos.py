"""``benchmarks/real_photos.py``: reading COCO keypoint files, matching, PCK, and a run on a
synthetic two-person image whose labelled joints stand in for hand annotations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import real_photos  # noqa: E402
from hmrkit.body.keypoints import COCO17_NAMES  # noqa: E402


def _coco(people, names=COCO17_NAMES, info=None, file_name="a.png"):
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "keypoints": k, **extra}
            for i, (k, extra) in enumerate(people)]
    return {"info": info or {}, "images": [{"id": 1, "file_name": file_name}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(names)}]}


def test_annotations_by_name_with_the_pixel_offset(tmp_path):
    names = ["right_wrist", "nose", "tail"]  # any order; names outside COCO-17 are ignored
    data = _coco([([10, 20, 2, 30, 40, 1, 5, 5, 2], {"bbox": [0, 0, 100, 50]}),
                  ([0, 0, 0, 0, 0, 0, 0, 0, 0], {})], names)  # nothing labelled: dropped
    path = tmp_path / "k.json"
    path.write_text(json.dumps(data))
    _, people = real_photos.load_annotations(path, offset=0.5)
    (person,) = people["a.png"]
    k = person["keypoints"]
    assert k.shape == (17, 3) and (k[:, 2] > 0).sum() == 2
    np.testing.assert_allclose(k[COCO17_NAMES.index("right_wrist")], [10.5, 20.5, 2])
    np.testing.assert_allclose(k[COCO17_NAMES.index("nose")], [30.5, 40.5, 1])
    np.testing.assert_allclose(person["box"], [0.5, 0.5, 100.5, 50.5])
    data["info"] = {"pixel_convention": "hmrkit"}  # no offset for files in hmrkit's pixels
    path.write_text(json.dumps(data))
    _, people = real_photos.load_annotations(path, offset=0.5)
    np.testing.assert_allclose(people["a.png"][0]["box"], [0, 0, 100, 50])

    path.write_text(json.dumps(_coco([([1, 2, 2], {})], names)))
    with pytest.raises(real_photos.BenchmarkError, match="annotation 1 has 1 keypoints for 3"):
        real_photos.load_annotations(path, 0.0)
    path.write_text("{}")
    with pytest.raises(real_photos.BenchmarkError, match="not a COCO keypoint file"):
        real_photos.load_annotations(path, 0.0)


def test_errors_match_and_pck_against_a_hand_count():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 200, (17, 2))
    labels = []
    for shift in (0.0, 500.0):
        k = np.concatenate([truth + shift, np.full((17, 1), 2.0)], 1)
        k[3:, 2] = [1] * 4 + [0] * 10  # 3 visible, 4 hidden, 10 not labelled
        labels.append({"keypoints": k, "box": np.array([shift, shift, shift + 100,
                                                        shift + 200]), "id": 0})
    # detections in the other order; the first is 4 px off (2 % of the 200 px box)
    detected = [truth + 500 + [0, 30], truth + [4.0, 0.0]]
    assert real_photos.match(labels, detected, 0.25) == [(0, 1), (1, 0)]
    assert real_photos.match(labels, [truth + 100.0], 0.25) == []
    err = real_photos.errors(labels[0], detected[1])
    assert np.isnan(err[7:]).all() and np.allclose(err[:7], 0.02)
    assert np.isinf(real_photos.errors(labels[0], None)[:7]).all()
    rows = []
    for lab, points, matched in ((labels[0], detected[1], True), (labels[1], None, False)):
        e = real_photos.errors(lab, points)
        rows.append({"matched": matched, "visibility": lab["keypoints"][:, 2].tolist(),
                     "errors": {est: e.tolist() for est in real_photos.ESTIMATES}})
    table = real_photos.summarize(rows)
    end = table["labelled / end to end / mesh"]
    assert end["joints"] == 14 and end["PCK@0.05"] == 50.0 and end["PCK@0.2"] == 50.0
    matched = table["labelled / matched / mesh"]
    assert matched["joints"] == 7 and matched["PCK@0.05"] == 100.0
    assert matched["mean error (% box)"] == pytest.approx(2.0)
    assert table["visible / end to end / BlazePose"]["joints"] == 6


def test_run_on_a_synthetic_two_person_photo(tmp_path):
    """The labelled COCO-17 joints of a synthetic image as the annotation file: both people
    matched; BlazePose's points agree with the labels (PCK@0.1 well above the pasted mean
    skeleton); the contact sheet has a row of four pictures."""
    from tests.helpers import skip_without_blazepose, two_person_scene

    skip_without_blazepose()
    scene = two_person_scene()
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "two.png"), scene["image"][..., ::-1])
    labels = scene["labels"]
    people = []
    for kp, centre, size in zip(labels["keypoints2d/coco17"], labels["box_center"],
                                labels["box_size"], strict=True):
        k = kp.copy()
        k[:, 2] = np.where(kp[:, 2] > 0, 2, 1)  # hidden joints are labelled too (v = 1)
        half = size / 2 / 1.2
        people.append((k.reshape(-1).tolist(), {"bbox": [float(centre[0] - half),
                                                         float(centre[1] - half),
                                                         float(2 * half), float(2 * half)]}))
    ann = tmp_path / "k.json"
    ann.write_text(json.dumps(_coco(people, info={"pixel_convention": "hmrkit"},
                                    file_name="two.png")))
    out = tmp_path / "out"
    assert real_photos.main(["run", "--images", str(folder), "--annotations", str(ann),
                             "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["people"] == 2 and result["matched"] == 2
    summary = result["summary"]
    bp = summary["visible / matched / BlazePose"]
    assert bp["PCK@0.1"] > 80, bp
    assert bp["PCK@0.1"] > summary["visible / matched / mean skeleton in the box"]["PCK@0.1"]
    sheet = cv2.imread(str(out / "contact_sheet.jpg"))
    assert sheet.shape[1] == 4 * 320 + 5 * 4 and sheet.shape[0] >= 320
    assert (out / "table.md").read_text().startswith("| joints scored")


def test_missing_photos_are_a_one_line_error(tmp_path, capsys):
    ann = tmp_path / "k.json"
    ann.write_text(json.dumps(_coco([([1.0] * 51, {})])))
    (tmp_path / "photos").mkdir()
    assert real_photos.main(["run", "--images", str(tmp_path / "photos"), "--annotations",
                             str(ann), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.png (file not found)" in err[0]
