"""The method contract: registry, optional estimate fields, open metric set, label body models,
refiners."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.labels import LabelBodies, body_model_code, body_model_family
from hmrkit.cli import main
from hmrkit.metrics.scoring import score
from hmrkit.models.heads import IterativeRegressor
from hmrkit.models.refiners import IdentityRefiner, Refiner
from hmrkit.models.registry import RegistryError, method_class, refiner_class


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--n", "3", "--out", str(root / "train"), "--seed", "11"]) == 0
    return root / "train"


@pytest.fixture(scope="module")
def batch(data):
    from hmrkit.evaluate import dataset_for
    from hmrkit.models.methods import MeanPose

    dataset = dataset_for(MeanPose(), data)
    return next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))


class ShiftRefiner(Refiner):
    """Moves every person 10 cm along x (so a refiner visibly changes the metrics)."""

    def __call__(self, batch, estimate, camera, body):
        from dataclasses import replace

        assert camera.intrinsics.shape == (len(estimate.transl), 4)
        return replace(estimate, transl=estimate.transl + torch.tensor([0.1, 0.0, 0.0]))


def test_registry_finds_names_and_class_paths():
    from hmrkit.models.methods import CLIFF, MeanPose

    assert method_class("cliff") is CLIFF and method_class("mean-pose") is MeanPose
    assert method_class("hmrkit.models.methods.cliff.CLIFF") is CLIFF
    assert refiner_class("identity") is IdentityRefiner
    assert refiner_class(f"{__name__}.ShiftRefiner") is ShiftRefiner
    with pytest.raises(RegistryError, match="unknown method 'nope'"):
        method_class("nope")
    with pytest.raises(RegistryError, match="not found"):
        method_class("hmrkit.models.methods.cliff.Nope")
    with pytest.raises(RegistryError, match="is not a hmrkit.models.methods.base.Method"):
        method_class("hmrkit.models.refiners.IdentityRefiner")


def test_body_model_codes():
    assert body_model_family("anny24-full") == "anny24" and body_model_code("smpl") == 1
    with pytest.raises(ValueError, match="unknown body model 'star'"):
        body_model_family("star")


def test_metrics_follow_what_the_estimate_has(batch):
    from hmrkit.models.methods import MeanPose

    model = MeanPose()
    full = model.infer(batch)
    names = set(score(full, batch, model.labels))
    assert names == {"mpjpe", "pa_mpjpe", "n_mpjpe", "pve", "pa_pve", "root_transl"}
    # a dense method: vertices only -> vertex errors only
    dense = BodyEstimate(vertices=full.vertices)
    got = score(dense, batch, model.labels)
    assert set(got) == {"pve", "pa_pve"}
    torch.testing.assert_close(got["pa_pve"], score(full, batch, model.labels)["pa_pve"])
    # a world-frame estimate: W-MPJPE / W-PVE, zero when it is the labelled world body
    world = BodyEstimate(rotmat=torch.cat([batch["world_global_orient"][:, None],
                                           batch["body_pose"]], 1),
                         betas=batch["betas"], world_global_orient=batch["world_global_orient"])
    world = world.posed(model.body)
    got = score(world, batch, model.labels)
    assert {"w_mpjpe", "w_pve"} <= set(got) and float(got["w_mpjpe"].max()) < 1e-3


def test_fewer_betas_than_the_labels_evaluate(data, tmp_path):
    """The body model sets the number of shape coefficients; labels with more are posed with
    all of theirs (MeanPose(num_betas=8) failed at validation before)."""
    from hmrkit.evaluate import dataset_for, evaluate
    from hmrkit.models.methods import MeanPose

    model = MeanPose(num_betas=8)
    assert model.num_betas == 8 and model.infer(next(iter(torch.utils.data.DataLoader(
        dataset_for(model, data), batch_size=2)))).betas.shape == (2, 8)
    result = evaluate(model, dataset_for(model, data), progress=False)
    assert all(v == v for v in result["overall"].values())  # no NaN


def test_labels_of_another_body_model(data, monkeypatch):
    """SMPL labels are posed with SMPL (here a stand-in), never with the method's Anny-24:
    joints compare, vertices do not, and parameter losses skip them."""
    import hmrkit.body as body_pkg
    from hmrkit.body.model import BodyModel
    from hmrkit.models.methods import HMR
    from tests.helpers import random_body_data

    stand_in = BodyModel(random_body_data(num_betas=10))
    real = body_pkg.load_body_model
    monkeypatch.setattr(body_pkg, "load_body_model",
                        lambda name, **kw: stand_in if name == "smpl" else real(name, **kw))
    from hmrkit.evaluate import dataset_for

    model = HMR(crop_size=64, head=partial(IterativeRegressor, hidden=16))
    batch = next(iter(torch.utils.data.DataLoader(dataset_for(model, data), batch_size=4)))
    mixed = {**batch, "meta/body_model": torch.tensor([0, 1, 0, 1])[: len(batch["betas"])]}
    labels = LabelBodies(model.body, "anny24")
    posed = labels.pose(mixed, ("lsp14",))
    smpl = mixed["meta/body_model"] == 1
    assert torch.isnan(posed.vertices[smpl]).all() and not torch.isnan(posed.vertices[~smpl]).any()
    want = stand_in(batch["global_orient"][smpl], batch["body_pose"][smpl], batch["betas"][smpl])
    torch.testing.assert_close(posed.joints[smpl], want.joints)
    est = model.infer(mixed)
    got = score(est, mixed, labels)
    assert torch.isnan(got["pve"][smpl]).all() and torch.isfinite(got["mpjpe"]).all()
    # the pose / shape losses of SMPL-labelled people are zero, gradients included
    only_smpl = {k: v[smpl] if isinstance(v, torch.Tensor) and len(v) == len(smpl) else v
                 for k, v in mixed.items()}
    losses = model.compute_losses(model(only_smpl), only_smpl)
    assert float(losses["pose"].detach()) == 0.0 and float(losses["betas"].detach()) == 0.0


def test_smpl_labels_without_the_smpl_file_say_so(batch, monkeypatch, tmp_path):
    from hmrkit.models.methods import MeanPose

    monkeypatch.setenv("HMRKIT_SMPL_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = MeanPose()
    smpl = {**batch, "meta/body_model": torch.ones(len(batch["betas"]), dtype=torch.int64)}
    with pytest.raises(FileNotFoundError, match="SMPL parameters .* needs the SMPL model file"):
        model.evaluate_batch(smpl)


def test_refiner_runs_after_any_method(data, tmp_path):
    """``--refiner identity`` leaves the metrics as they are; a refiner that moves the people
    changes the camera-frame errors only."""
    runs = {}
    for name, refiner in (("plain", None), ("identity", "identity"),
                          ("shift", f"{__name__}.ShiftRefiner")):
        out = tmp_path / name
        argv = ["evaluate", "--method", "mean-pose", "--data", str(data), "--out", str(out)]
        assert main([*argv, *(["--refiner", refiner] if refiner else [])]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())["overall"]
    assert runs["identity"] == runs["plain"]
    assert runs["shift"]["root_transl"] != runs["plain"]["root_transl"]
    assert runs["shift"]["pa_mpjpe"] == pytest.approx(runs["plain"]["pa_mpjpe"])


def test_predict_writes_what_the_estimate_has():
    """A dense method's estimate (camera-frame vertices only) and a predicted focal reach the
    prediction files."""
    import numpy as np

    from hmrkit.geometry.cameras import Camera
    from hmrkit.predict import make_batch, unpack

    image = np.zeros((120, 160, 3), np.uint8)
    batch = make_batch([(image, (np.array([80.0, 60.0]), 100.0), None)], 32)
    vertices = torch.rand(1, 5, 3) + torch.tensor([0.0, 0.0, 3.0])
    dense = BodyEstimate(vertices=vertices,
                         camera=Camera.from_sample(batch).with_focal(torch.tensor([321.0])))
    (person,) = unpack(dense, batch)
    assert "joints3d" not in person and "betas" not in person and "global_orient" not in person
    np.testing.assert_allclose(person["vertices"], vertices[0].double().numpy())
    assert person["focal"] == pytest.approx(321.0)
    assert person["principal_point"].tolist() == [80.0, 60.0]
