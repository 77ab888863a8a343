"""Dense refinement pieces (hmrkit.fit.dense, hmrkit.fit.texture, the displacement network):
crop views, eqs. 2 and 5-6 against naive loops, a true field moving vertices onto their
targets, textures, and the tiny network learning on a few synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmrkit.body import load_body_model
from hmrkit.fit.dense import (
    crop_view,
    pixel_displacements,
    project,
    render_inputs,
    vertex_targets,
)
from hmrkit.fit.texture import Texture, back_project, perturb
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import crop_matrix
from hmrkit.render.gbuffer import rasterize
from hmrkit.render.maps import unique_vertex_colors

RES = 64


@pytest.fixture(scope="module")
def body():
    return load_body_model("anny24", dtype=torch.float64)


@pytest.fixture(scope="module")
def scene(body):
    """A posed body 3 m in front of a 320 x 240 camera, its crop view, its render."""
    g = torch.Generator().manual_seed(0)
    from hmrkit.geometry.rotations import axis_angle_to_rotmat

    rot = axis_angle_to_rotmat(torch.randn(1, 24, 3, dtype=torch.float64, generator=g) * 0.15)
    rot[:, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    out = body(rot[:, 0], rot[:, 1:])
    transl = torch.tensor([[0.2, 0.1, 3.0]], dtype=torch.float64)
    verts = (out.vertices + transl[:, None])[0].numpy()
    camera = Camera.default(torch.tensor([[320.0, 240.0]], dtype=torch.float64))
    px = camera.project(torch.from_numpy(verts)[None])[0].numpy()
    center = (px.min(0) + px.max(0)) / 2
    size = 1.2 * float((px.max(0) - px.min(0)).max())
    affine = crop_matrix(torch.from_numpy(center[None]), torch.tensor([size], dtype=torch.float64),
                         RES)
    view = crop_view(camera, affine, RES)[0]
    faces = body.faces.numpy()
    colors = unique_vertex_colors(body.v_template.numpy())
    maps, gbuf = render_inputs(view, verts, faces, colors)
    return dict(verts=verts, camera=camera, affine=affine, view=view, faces=faces, maps=maps,
                gbuf=gbuf, rot=rot, transl=transl)


def test_crop_view_projects_like_the_affine(scene):
    """Projecting into the crop = projecting into the image, then the crop affine; for
    rotated crops too."""
    camera, verts = scene["camera"], scene["verts"]
    full = camera.project(torch.from_numpy(verts)[None])[0]
    for rotation in (None, 0.4):
        affine = crop_matrix(torch.tensor([[150.0, 110.0]], dtype=torch.float64),
                             torch.tensor([200.0], dtype=torch.float64), RES, rotation=rotation)
        view = crop_view(camera, affine, RES)[0]
        want = full @ affine[0, :, :2].T + affine[0, :, 2]
        np.testing.assert_allclose(project(view, verts), want.numpy(), atol=1e-9)
    with pytest.raises(ValueError, match="mirrored"):
        crop_view(camera, crop_matrix(torch.tensor([[150.0, 110.0]]), torch.tensor([200.0]),
                                      RES, flip=True), RES)


def test_renders_have_their_channels_and_cover_the_person(scene):
    maps = scene["maps"]
    assert maps["depth"].shape == (1, RES, RES) and maps["normals"].shape == (3, RES, RES)
    assert maps["vertex_colors"].shape == (3, RES, RES) and "rgb" not in maps
    mask = maps["mask"][0] > 0
    assert 300 < mask.sum() < RES * RES
    assert np.all(maps["normals"][:, ~mask] == 0)
    np.testing.assert_allclose(np.linalg.norm(maps["normals"][:, mask], axis=0), 1.0, atol=1e-5)
    assert abs(maps["depth"][0, mask].mean()) < 1e-5  # relative to the mean visible depth


def test_eq2_pixel_field_matches_a_naive_loop(scene):
    gbuf, faces = scene["gbuf"], scene["faces"]
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(len(scene["verts"]), 2))
    field = pixel_displacements(gbuf, faces, delta)
    for v, u in zip(*np.nonzero(gbuf.mask), strict=True):
        tri = faces[gbuf.triangle_id[v, u]]
        want = sum(gbuf.barycentrics[v, u, k] * delta[tri[k]] for k in range(3))
        np.testing.assert_allclose(field[v, u], want, atol=1e-6)
    assert np.all(field[~gbuf.mask] == 0)


def test_eq5_vertex_average_matches_a_naive_loop(scene):
    gbuf, faces = scene["gbuf"], scene["faces"]
    V = len(scene["verts"])
    rng = np.random.default_rng(1)
    field = rng.normal(size=(RES, RES, 2))
    proj = rng.normal(size=(V, 2)) * 50
    targets, weights = vertex_targets(gbuf, faces, field, proj)
    num, den = np.zeros((V, 2)), np.zeros(V)
    for v, u in zip(*np.nonzero(gbuf.mask), strict=True):
        for k, vert in enumerate(faces[gbuf.triangle_id[v, u]]):
            b = float(gbuf.barycentrics[v, u, k])
            num[vert] += b * field[v, u]
            den[vert] += b
    seen = den > 0
    np.testing.assert_allclose(weights, seen.astype(float))
    np.testing.assert_allclose(targets[seen], proj[seen] + num[seen] / den[seen, None], atol=1e-9)
    np.testing.assert_allclose(targets[~seen], proj[~seen])


def _perturbed_target(body, scene, sigma=0.15, seed=2):
    from hmrkit.geometry.rotations import axis_angle_to_rotmat

    g = torch.Generator().manual_seed(seed)
    rot = scene["rot"] @ axis_angle_to_rotmat(
        torch.randn(1, 24, 3, dtype=torch.float64, generator=g) * sigma)
    return rot, (body(rot[:, 0], rot[:, 1:]).vertices + scene["transl"][:, None])[0].numpy()


def test_true_field_per_vertex_targets(body, scene):
    """Eqs. 1-2 from a perturbed body, then eqs. 5-6. The least-squares inverse gives back a
    vertex field that re-interpolates to the very same pixel field (eq. 2 is inverted on the
    pixels), and it is exact on the vertices the pixels determine; the paper's average lands
    close to the true per-vertex displacement (it smooths the field over a vertex's pixels)."""
    _, target = _perturbed_target(body, scene)
    view, gbuf, faces, verts = scene["view"], scene["gbuf"], scene["faces"], scene["verts"]
    start, goal = project(view, verts), project(view, target)
    field = pixel_displacements(gbuf, faces, goal - start)
    exact, w = vertex_targets(gbuf, faces, field, start, method="lstsq")
    seen = w > 0
    assert seen.sum() > 300
    again = pixel_displacements(gbuf, faces, np.where(seen[:, None], exact - start, 0.0))
    # to the 1e-6 damping that settles the vertices the pixels leave free
    np.testing.assert_allclose(again[gbuf.mask], field[gbuf.mask], atol=1e-4)
    err_exact = np.linalg.norm(exact - goal, axis=1)[seen]
    assert np.mean(err_exact < 1e-4) > 0.25  # the determined ones (many see 1-2 pixels)
    moved = np.linalg.norm(goal - start, axis=1)[seen]
    average, _ = vertex_targets(gbuf, faces, field, start)
    err = np.linalg.norm(average - goal, axis=1)[seen]
    assert moved.mean() > 1.0 and err.mean() < 0.25 * moved.mean(), (moved.mean(), err.mean())


def test_a_true_field_fitted_moves_rendered_vertices_onto_their_targets(body, scene):
    """The full path of the dense refinement with the true field: per-pixel field -> visible
    vertices' crop targets -> full-image targets -> the fitter (dense term only). The fitted
    body's visible vertices land on the perturbed body's projections, and its pose comes back
    much closer to the perturbed body's than where it started."""
    from hmrkit.fit import FitConfig, Fitter, PosePrior, Targets
    from hmrkit.geometry.crops import invert_affine, transform_points

    rot_goal, target = _perturbed_target(body, scene, sigma=0.1, seed=3)
    view, gbuf, faces, verts = scene["view"], scene["gbuf"], scene["faces"], scene["verts"]
    start, goal = project(view, verts), project(view, target)
    field = pixel_displacements(gbuf, faces, goal - start)
    crop_targets, w = vertex_targets(gbuf, faces, field, start)
    full = transform_points(torch.from_numpy(crop_targets)[None], invert_affine(scene["affine"]))
    cfg = FitConfig(iterations=150, schedule="cosine", tol=0.0, lr=0.01, optimize_betas=False,
                    pose_prior_weight=0.0, joint_limits_weight=0.0, shape_weight=0.0)
    camera = scene["camera"]
    fit = Fitter(body, cfg, PosePrior.load().to(torch.float64)).fit(
        scene["rot"], torch.zeros(1, body.num_betas, dtype=torch.float64), scene["transl"],
        camera, Targets(vertices2d=full, vertex_weights=torch.from_numpy(w)[None]))
    assert fit.status == ["ok"]
    seen = w > 0
    got = camera.project(fit.vertices + fit.transl[:, None])[0].numpy()
    want = camera.project(torch.from_numpy(target)[None])[0].numpy()
    before = camera.project(torch.from_numpy(verts)[None])[0].numpy()
    err0 = np.linalg.norm(before - want, axis=1)[seen].mean()
    err1 = np.linalg.norm(got - want, axis=1)[seen].mean()
    assert err0 > 2.0 and err1 < 0.25 * err0, (err0, err1)
    mm0 = np.linalg.norm(verts - target, axis=1).mean() * 1000
    mm1 = np.linalg.norm(got_3d := (fit.vertices + fit.transl[:, None])[0].numpy() - target,
                         axis=1).mean() * 1000
    assert mm1 < 0.6 * mm0, (mm0, mm1, got_3d.shape)


def test_textures_render_perturb_and_back_project(body, scene):
    faces, verts = scene["faces"], scene["verts"]
    rng = np.random.default_rng(0)
    colours = rng.random((len(verts), 3)).astype(np.float32)
    tex = Texture(vertex_colors=colours)
    uv = Texture(image=(rng.random((32, 32, 3)) * 255).astype(np.uint8))
    with pytest.raises(ValueError):
        Texture()
    for t in (tex, uv):
        maps, _ = render_inputs(scene["view"], verts, faces, colours, t.renderer(body))
        assert maps["rgb"].shape == (3, RES, RES) and 0 <= maps["rgb"].min() <= maps["rgb"].max() <= 1
    noisy = perturb(tex, "noise", 0.1, rng=0)
    assert 0.05 < np.abs(noisy.vertex_colors - colours).mean() < 0.1
    np.testing.assert_allclose(perturb(tex, "brightness", 0.5).vertex_colors, colours * 0.5,
                               atol=1e-6)
    assert perturb(tex, "wrong", other=uv) is uv and perturb(tex, "none") is tex
    # back-projection: photographs of a body painted with known smooth colours (each vertex's
    # template position) give them back on the visible vertices, the median over the frames
    smooth = unique_vertex_colors(body.v_template.numpy()).astype(np.float32)
    camera = scene["camera"]
    K = camera.K[0].numpy()
    gbuf = rasterize(verts, faces, K, (320, 240))
    from hmrkit.render.maps import interpolate, vertex_visibility_depth

    image = np.clip(np.round(interpolate(gbuf, faces, smooth) * 255), 0, 255).astype(np.uint8)
    dark = (image * 0.2).astype(np.uint8)  # an outlier frame: the median ignores it
    got = back_project([(image, verts, K), (dark, verts, K), (image, verts, K)], faces)
    visible = vertex_visibility_depth(gbuf, verts, faces, 0.02)
    assert visible.sum() > 300
    err = np.abs(got.vertex_colors[visible] - smooth[visible]).max(1)
    # silhouette vertices sample some background (bilinear), the others their own colour
    assert np.median(err) < 0.02 and err.mean() < 0.06, (np.median(err), err.mean())
    shuffled = np.random.default_rng(0).permutation(smooth[visible])
    assert np.abs(got.vertex_colors[visible] - shuffled).max(1).mean() > 4 * err.mean()
    unseen = got.vertex_colors[~visible]  # the median colour of the seen ones
    np.testing.assert_allclose(unseen, np.broadcast_to(np.median(
        got.vertex_colors[visible], 0), unseen.shape), atol=1e-6)


@pytest.mark.filterwarnings("ignore")
def test_tiny_network_learns_on_synthetic_samples(tiny_split, tmp_path):
    """Samples from the tiny split (perturbed truth, true textures), a tiny network: its
    end-point error on them falls well below the zero-field error in 80 steps."""
    from hmrkit.models.displacement import INPUTS, NetConfig, load_displacement_net
    from hmrkit.models.displacement_data import (
        SampleConfig,
        evaluate_epe,
        make_samples,
        train_displacement,
    )

    torch.manual_seed(0)
    cfg = SampleConfig(resolution=32, crop_size=48, texture_mix={"true": 1.0},
                       pose_sigma=0.15)
    samples = make_samples(tiny_split, None, cfg, limit=6, progress=False)
    assert samples["image"].shape == (6, 3, 32, 32) and samples["mask"].any((1, 2, 3)).all()
    zero = np.array([np.linalg.norm(d.astype(np.float32), axis=0)[m[0]].mean()
                     for d, m in zip(samples["displacement"], samples["mask"], strict=True)])
    net_cfg = NetConfig(renders=INPUTS["full"], width=8, blocks=1, channels=16, stacks=2,
                        depth=2, resolution=32)
    record = train_displacement(samples, samples, net_cfg, 80, tmp_path, batch_size=6, lr=3e-3,
                                eval_every=40, progress=False)
    net = load_displacement_net(tmp_path / "net.pt")
    epe = evaluate_epe(net, samples)
    assert record["best_val_epe"] == pytest.approx(float(epe.mean()), rel=1e-4)
    assert epe.mean() < 0.7 * zero.mean(), (epe.mean(), zero.mean())


@pytest.mark.filterwarnings("ignore")
def test_test_sets_differ_only_in_their_texture(tiny_split):
    """One seed, one texture kind forced per set (Table 3's test sets): the same persons get the
    same initial estimates and targets whatever the texture (noise draws from its own stream);
    only the RGB render differs, and ``none`` renders no RGB."""
    from hmrkit.models.displacement_data import SampleConfig, make_samples

    cfg = SampleConfig(resolution=32, crop_size=48, seed=3)
    sets = {t: make_samples(tiny_split, None, cfg, limit=4, texture=t, texture_level=lvl,
                            progress=False)
            for t, lvl in (("true", None), ("noise", 0.2), ("brightness", 0.5), ("none", None))}
    sets["mix"] = make_samples(tiny_split, None, cfg, limit=4, progress=False)
    ref = sets["true"]
    for name, s in sets.items():
        for k in ("rotmat", "betas", "transl", "displacement", "mask", "depth", "index"):
            np.testing.assert_array_equal(s[k], ref[k], err_msg=f"{name}: {k}")
    kinds = list(ref["texture_kinds"])
    for name in ("true", "noise", "brightness", "none"):
        assert (sets[name]["texture"] == kinds.index(name)).all()
    assert (sets["noise"]["rgb"] != ref["rgb"]).mean() > 0.05
    assert sets["brightness"]["rgb"].astype(int).sum() < 0.6 * ref["rgb"].astype(int).sum()
    assert sets["none"]["rgb"].max() == 0 < ref["rgb"].max()


def test_samples_are_cut_as_the_method_cuts_its_crops(tiny_split):
    """``crop_style="blazepose"`` samples read MediaPipe's rotated squares, as the refiner
    resamples a BlazePose method's crops: the sample's image is that crop resampled (not the
    upright box's), and the person is rendered with a displacement target."""
    from hmrkit.data.dataset import SyntheticDataset
    from hmrkit.models.displacement_data import SampleConfig, make_samples, network_crops

    cfg = SampleConfig(resolution=32, crop_size=256, crop_style="blazepose", seed=0)
    got = make_samples(tiny_split, None, cfg, limit=2, texture="none", progress=False)
    ds = SyntheticDataset(tiny_split, None, crop_size=256, crop_style="blazepose",
                          keys=("image", "crop_affine"))
    box = SyntheticDataset(tiny_split, None, crop_size=256, keys=("image", "crop_affine"))
    for i in range(2):
        item = ds[i]
        crop, _ = network_crops(item["image"][None], item["crop_affine"][None], 32)
        np.testing.assert_array_equal(got["image"][i],
                                      np.round(crop[0].numpy() * 255).astype(np.uint8))
        upright, _ = network_crops(box[i]["image"][None], box[i]["crop_affine"][None], 32)
        assert not np.array_equal(got["image"][i],
                                  np.round(upright[0].numpy() * 255).astype(np.uint8))
    assert got["mask"].reshape(2, -1).any(1).all() and np.abs(got["displacement"]).max() > 0


def test_paper_sized_network_shapes():
    """The paper's network: two ResNet-50 stem + layer1 branches at stride 1 without max-pool
    (their features keep the input resolution, 256 channels), 4 hourglass stacks, a 2-channel
    map per stack at the input resolution, all starting at zero displacement; the loss sums
    eq. 3 over the stacks."""
    from hmrkit.models.displacement import DisplacementNet, NetConfig, endpoint_error, stacked_loss

    net = DisplacementNet(NetConfig()).eval()
    assert net.config.render_channels == 10 and len(net.hourglasses) == 4
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.image_encoder.modules())
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    image, renders = torch.rand(2, 3, 16, 16), torch.rand(2, 10, 16, 16)
    with torch.no_grad():
        assert net.image_encoder(image).shape == (2, 256, 16, 16)
        preds = net(image, renders)
    assert len(preds) == 4 and all(p.shape == (2, 2, 16, 16) for p in preds)
    assert all(float(p.abs().max()) == 0.0 for p in preds)
    target, mask = torch.randn(2, 2, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    naive = [np.mean([float(torch.linalg.norm(target[b, :, i, j])) for i in range(16)
                      for j in range(16) if mask[b, 0, i, j]]) for b in range(2)]
    np.testing.assert_allclose(endpoint_error(preds[-1], target, mask).numpy(), naive,
                               rtol=1e-5)
    assert float(stacked_loss(preds, target, mask)) == pytest.approx(4 * np.mean(naive),
                                                                     rel=1e-5)


def test_crop_texture_reads_the_colours_of_the_crop_back(body, scene):
    """A person without a texture gets its crop's colours back-projected onto its visible
    vertices (the dense refiner's texture on photos): a crop that shows the body painted with
    known smooth colours gives those colours back."""
    from hmrkit.models.dense_refiner import crop_texture
    from hmrkit.render.maps import vertex_visibility_depth

    faces, verts, view = scene["faces"], scene["verts"], scene["view"]
    smooth = unique_vertex_colors(body.v_template.numpy())
    crop = torch.from_numpy(scene["maps"]["vertex_colors"])  # (3, RES, RES) render of `smooth`
    got = crop_texture(crop, view, verts, faces).vertex_colors
    visible = vertex_visibility_depth(scene["gbuf"], view.to_view(verts), faces, 0.02)
    assert visible.sum() > 200
    err = np.abs(got[visible] - smooth[visible]).max(1)
    shuffled = np.random.default_rng(0).permutation(smooth[visible])
    control = np.abs(got[visible] - shuffled).max(1)
    assert np.median(err) < 0.03 and err.mean() < 0.5 * control.mean(), (
        np.median(err), err.mean(), control.mean())
