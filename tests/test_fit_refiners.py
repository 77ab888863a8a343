"""The fitting refiners (keypoints, keypoints-labels, dense, dense-labels) inside
``hmrkit evaluate``, ``hmrkit predict`` and ``hmrkit fit``; bad persons left unchanged with a
reason."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from hmrkit.cli import main

WEIGHTS = "src/hmrkit/models/weights/cliff-r18-96-synth.pt"


def _evaluate(data, out, *args, method=("--method", "mean-pose")) -> dict:
    argv = ["evaluate", *method, "--data", str(data), "--out", str(out),
            "--batch-size", "16", *map(str, args)]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def plain(tiny_split, tmp_path_factory):
    return _evaluate(tiny_split, tmp_path_factory.mktemp("plain"))


def test_keypoint_refiner_inside_evaluate(tiny_split, plain, tmp_path):
    """Fitting the mean pose to the labelled COCO-17 keypoints (with 2 px noise) brings the
    estimate much closer to the truth; the options reach the refiner and the record."""
    run = _evaluate(tiny_split, tmp_path, "--refiner", "keypoints-labels",
                    "--refiner-arg", "noise_px=2")
    assert run["refiner_args"] == ["noise_px=2"] and run["count"] == plain["count"]
    before, after = plain["overall"], run["overall"]
    assert after["mpjpe"] < 0.7 * before["mpjpe"], (before, after)
    assert after["pa_mpjpe"] < before["pa_mpjpe"]


def test_dense_labels_refiner_inside_evaluate(tiny_split, plain, tmp_path):
    """Fitting to the true dense displacements (the upper bound) lowers the vertex error."""
    run = _evaluate(tiny_split, tmp_path, "--refiner", "dense-labels")
    before, after = plain["overall"], run["overall"]
    assert after["pve"] < 0.7 * before["pve"], (before, after)
    assert "epe" not in after  # no network, no end-point error


def test_dense_network_refiner_inside_evaluate_reports_epe(tiny_split, plain, tmp_path):
    """A (tiny, untrained) displacement network runs inside evaluate and its per-person EPE
    becomes the metric ``epe``; an untrained head predicts no displacement, so its EPE is
    that of the zero field, well above 0."""
    from hmrkit.models.displacement import INPUTS, DisplacementNet, NetConfig, save_displacement_net

    torch.manual_seed(0)
    net = DisplacementNet(NetConfig(renders=INPUTS["no_texture"], width=4, blocks=1,
                                    channels=8, stacks=2, depth=2, resolution=32))
    save_displacement_net(net, tmp_path / "net.pt")
    run = _evaluate(tiny_split, tmp_path / "run", "--refiner", "dense", "--refiner-arg",
                    f"network={tmp_path / 'net.pt'}", method=("--checkpoint", WEIGHTS))
    assert 0.5 < run["overall"]["epe"] < 50
    assert np.isfinite(run["overall"]["pve"])


def test_a_refiner_that_cannot_run_on_the_data_is_a_one_line_error(tiny_split, tmp_path,
                                                                    capsys):
    """The mean pose reads no image: the displacement network has no crop to read."""
    from hmrkit.models.displacement import DisplacementNet, NetConfig, save_displacement_net

    save_displacement_net(DisplacementNet(NetConfig(width=4, blocks=1, channels=8, stacks=1,
                                                    depth=1, resolution=16)),
                          tmp_path / "net.pt")
    argv = ["evaluate", "--method", "mean-pose", "--data", str(tiny_split), "--out",
            str(tmp_path / "run"), "--refiner", "dense", "--refiner-arg",
            f"network={tmp_path / 'net.pt'}"]
    assert main(argv) == 2
    assert "dense refiner: the batch has no person crop" in capsys.readouterr().err


def test_bad_refiner_options_are_one_line_errors(tiny_split, tmp_path, capsys):
    argv = ["evaluate", "--method", "mean-pose", "--data", str(tiny_split), "--out",
            str(tmp_path)]
    assert main([*argv, "--refiner", "keypoints-labels", "--refiner-arg", "bogus=1"]) == 2
    assert "does not take ['bogus']" in capsys.readouterr().err
    assert main([*argv, "--refiner", "dense", "--refiner-arg",
                 f"network={tmp_path / 'none.pt'}"]) == 2
    assert "no displacement network at" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad persons
def _batch_and_estimate(data, n=4):
    from hmrkit.evaluate import dataset_for
    from hmrkit.models.methods import MeanPose

    model = MeanPose()
    dataset = dataset_for(model, data, extra_keys=("keypoints2d/coco17",))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=n)))
    return model, batch


@pytest.mark.parametrize("name", ["keypoints-labels", "dense-labels"])
def test_bad_persons_are_left_unchanged_and_the_refiner_says_why(tiny_split, name, caplog):
    """One batch: a good person, one with no visible keypoint (keypoints) / no labels
    (dense), one with a degenerate box, one with a NaN estimate. Only the first is refined;
    the others keep the method's estimate bit for bit, with a status and a logged reason."""
    from hmrkit.geometry.cameras import Camera
    from hmrkit.models.registry import make_refiner

    model, batch = _batch_and_estimate(tiny_split)
    batch["keypoints2d/coco17"][1, :, 2] = 0.0
    batch["has_smpl"][1] = 0.0
    with torch.no_grad():
        est = model.infer(batch)
    batch["box_size"][2] = 0.0  # a degenerate box after a method that gave an estimate
    batch["crop_affine"][2] = 0.0  # (and the crop of a zero-size box)
    est.transl[3, 0] = float("nan")
    refiner = make_refiner(name)
    with caplog.at_level(logging.WARNING):
        out = refiner(batch, est, Camera.from_sample(batch), model.body)
    status = out.extras["fit/status"].tolist()
    assert status == [0, 1, 1, 1]
    assert not torch.equal(out.rotmat[0], est.rotmat[0])
    for b in (1, 2, 3):
        torch.testing.assert_close(out.rotmat[b], est.rotmat[b], rtol=0, atol=0)
        torch.testing.assert_close(out.betas[b], est.betas[b], rtol=0, atol=0)
        torch.testing.assert_close(out.transl[b], est.transl[b], rtol=0, atol=0,
                                   equal_nan=True)
    text = caplog.text
    assert "3 of 4 persons not refined" in text
    assert "degenerate box" in text and "not finite" in text
    assert "no target point with a positive confidence" in text


# --------------------------------------------------------------------------- predict / fit
@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import cv2
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), data.astronaut()[..., ::-1])
    return path


def test_fit_command_from_scratch_on_a_photo(photo, tmp_path):
    """``hmrkit fit``: BlazePose finds the person and its landmarks, the mean pose in its box
    is fitted to them: the keypoint term falls by far, and the record says so."""
    from hmrkit.predict import fit_main

    out = tmp_path / "fit"
    assert fit_main([str(photo), "--out", str(out), "--formats", "", "--no-side-view"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["refiner"] == "keypoints" and index["options"]["detector"] == "blazepose"
    person = json.loads((out / "astronaut_p0.json").read_text())
    assert person["fit_status"] == 0
    assert person["fit_keypoints"] < 0.05 * person["fit_initial_keypoints"], person


@pytest.mark.parametrize("inputs", ["no_texture", "full"])
def test_dense_refiner_inside_predict(photo, tmp_path, inputs):
    """``hmrkit predict --refine dense`` with a network file runs after the shipped CLIFF; a
    network that reads the textured render gets each person's back-projected crop colours."""
    from hmrkit.models.displacement import INPUTS, DisplacementNet, NetConfig, save_displacement_net
    from hmrkit.predict import main as predict_main

    torch.manual_seed(0)
    net = DisplacementNet(NetConfig(renders=INPUTS[inputs], width=4, blocks=1,
                                    channels=8, stacks=2, depth=2, resolution=32))
    torch.nn.init.normal_(net.heads[-1].weight, std=0.5)  # some displacement to fit to
    save_displacement_net(net, tmp_path / "net.pt")
    out = tmp_path / "pred"
    argv = [str(photo), "--checkpoint", WEIGHTS, "--out", str(out), "--formats", "",
            "--no-side-view", "--refine", "dense", "--refiner-arg",
            f"network={tmp_path / 'net.pt'}"]
    assert predict_main(argv) == 0
    person = json.loads((out / "astronaut_p0.json").read_text())
    assert person["fit_status"] == 0 and np.isfinite(person["fit_dense"])
    plain = tmp_path / "plain"
    assert predict_main([str(photo), "--checkpoint", WEIGHTS, "--out", str(plain),
                         "--formats", "", "--no-side-view", "--refiner", "none"]) == 0
    before = json.loads((plain / "astronaut_p0.json").read_text())
    assert "fit_status" not in before
    assert not np.allclose(before["body_pose"], person["body_pose"])


def test_predict_fits_detected_persons_to_their_landmarks_by_default(photo, tmp_path):
    """With the BlazePose detector (the default) predict runs the keypoint refiner; with
    ``--detector none`` there are no landmarks and no refiner."""
    from hmrkit.predict import main as predict_main

    for name, extra, refiner in (("default", [], "keypoints"),
                                 ("whole", ["--detector", "none"], None)):
        out = tmp_path / name
        assert predict_main([str(photo), "--checkpoint", WEIGHTS, "--out", str(out),
                             "--formats", "", "--no-side-view", *extra]) == 0
        assert json.loads((out / "index.json").read_text())["refiner"] == refiner
        person = json.loads((out / "astronaut_p0.json").read_text())
        assert ("fit_status" in person) == (refiner is not None)
        if refiner:
            assert person["fit_status"] == 0
            assert person["fit_keypoints"] < person["fit_initial_keypoints"]


def test_fit_command_on_an_image_without_a_person_says_so(tmp_path, capsys):
    import cv2

    from hmrkit.predict import fit_main

    cv2.imwrite(str(tmp_path / "empty.png"), np.full((240, 320, 3), 127, np.uint8))
    assert fit_main([str(tmp_path / "empty.png"), "--out", str(tmp_path / "out"),
                     "--formats", ""]) == 1
    assert "hmrkit fit: skipped" in (err := capsys.readouterr().err) and "no person detected" in err
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["images"][0]["status"] == "no person"
