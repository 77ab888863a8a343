"""The SMPLify-style fitter (hmrkit.fit): robust cost and terms against naive loops, priors
minimal where they should be, round trips in float64, bad input left unchanged with a reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from hmrkit.body import load_body_model
from hmrkit.fit import FitConfig, Fitter, PosePrior, Targets, geman_mcclure
from hmrkit.fit.fitter import _Posing
from hmrkit.fit.priors import POSE_PRIOR_FILE, fit_gmm, gmm_log_likelihood, shape_prior
from hmrkit.fit.terms import keypoint_3d_term, reprojection_term
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.rotations import axis_angle_to_rotmat, rotmat_to_axis_angle

F64 = torch.float64


@pytest.fixture(scope="module")
def body():
    return load_body_model("anny24", dtype=F64)


@pytest.fixture(scope="module")
def prior():
    return PosePrior.load().to(F64)


def _mean_pose(B: int) -> torch.Tensor:
    from hmrkit.geometry.rotations import sixd_to_rotmat
    from hmrkit.models.heads import mean_parameters

    six = torch.as_tensor(mean_parameters(24, 10)["pose"], dtype=F64).view(24, 6)
    return sixd_to_rotmat(six).expand(B, -1, -1, -1).clone()


def _person(body, B: int = 2, seed: int = 0):
    """Persons with a random pose near the mean pose, random shape, 3 m from the camera."""
    g = torch.Generator().manual_seed(seed)
    pose = _mean_pose(B) @ axis_angle_to_rotmat(torch.randn(B, 24, 3, dtype=F64, generator=g) * 0.2)
    betas = torch.randn(B, 10, dtype=F64, generator=g)
    transl = torch.tensor([[0.1, 0.2, 3.0]], dtype=F64).repeat(B, 1)
    camera = Camera.default(torch.tensor([[640.0, 480.0]] * B, dtype=F64))
    return pose, betas, transl, camera, g


def _keypoints(body, pose, betas, transl, camera, names=("joints", "blazepose33", "coco17")):
    out = body(pose[:, 0], pose[:, 1:], betas)
    kp2, kp3 = {}, {}
    for n in names:
        p3 = body.keypoints(out, n)
        p2 = camera.project(p3, transl)
        kp2[n] = torch.cat([p2, torch.ones_like(p2[..., :1])], -1)
        kp3[n] = torch.cat([p3, torch.ones_like(p3[..., :1])], -1)
    return out, kp2, kp3


NO_PRIORS = dict(pose_prior_weight=0.0, joint_limits_weight=0.0, shape_weight=0.0)


# --------------------------------------------------------------------------- robust cost
def test_geman_mcclure_matches_naive_loop_and_its_shape():
    x = torch.randn(200, dtype=F64) * 150
    for sigma in (1.0, 100.0):
        out = geman_mcclure(x, sigma)
        ref = [sigma**2 * v**2 / (sigma**2 + v**2) for v in x.tolist()]
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-14)
    assert float(geman_mcclure(torch.tensor(0.0, dtype=F64))) == 0.0
    torch.testing.assert_close(geman_mcclure(-x), geman_mcclure(x))  # even
    small = torch.tensor([1e-3, 1e-2], dtype=F64)  # ~ x^2 near 0
    torch.testing.assert_close(geman_mcclure(small), small**2, rtol=1e-7, atol=0)
    assert float(geman_mcclure(torch.tensor(1e8, dtype=F64))) < 100.0**2  # saturates at s^2
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: geman_mcclure(t, 50.0), (xg[:10],))


def test_reprojection_term_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    B, N = 3, 7
    proj = torch.randn(B, N, 2, dtype=F64, generator=g) * 200
    target = torch.randn(B, N, 2, dtype=F64, generator=g) * 200
    w = torch.rand(B, N, dtype=F64, generator=g)
    scale = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    out = reprojection_term(proj, target, w, scale, 100.0)
    for b in range(B):
        num = den = 0.0
        for k in range(N):
            r = math.hypot(*(proj[b, k] - target[b, k]).tolist()) * float(scale[b])
            num += float(w[b, k]) * 100.0**2 * r**2 / (100.0**2 + r**2)
            den += float(w[b, k])
        assert float(out[b]) == pytest.approx(num / den, rel=1e-12)


def test_keypoint_3d_term_matches_naive_loop_and_is_root_aligned():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(2, 5, 3, dtype=F64, generator=g)
    t = torch.cat([torch.randn(2, 5, 3, dtype=F64, generator=g),
                   torch.rand(2, 5, 1, dtype=F64, generator=g)], -1)
    out = keypoint_3d_term(p, t, (0, 1), 20.0)
    for b in range(2):
        pr, tr = p[b] - p[b, :2].mean(0), t[b, :, :3] - t[b, :2, :3].mean(0)
        d = ((pr - tr).norm(dim=-1) * 100).tolist()
        w = t[b, :, 3].tolist()
        ref = sum(wi * 400 * di**2 / (400 + di**2) for wi, di in zip(w, d, strict=True)) / sum(w)
        assert float(out[b]) == pytest.approx(ref, rel=1e-10)
    shifted = keypoint_3d_term(p + torch.tensor([1.0, -2.0, 3.0], dtype=F64), t, (0, 1), 20.0)
    torch.testing.assert_close(shifted, out)


# --------------------------------------------------------------------------- priors
def test_shape_prior_zero_at_the_mean():
    assert float(shape_prior(torch.zeros(1, 10)).sum()) == 0.0
    b = torch.randn(4, 10, dtype=F64)
    torch.testing.assert_close(shape_prior(b), (b**2).sum(1))


def test_mixture_energy_is_zero_with_zero_gradient_at_the_best_mean(prior):
    best = int(torch.argmin(prior.constants))
    mean = prior.means[best].view(23, 3)
    rot = torch.cat([torch.eye(3, dtype=F64)[None], axis_angle_to_rotmat(mean)])[None]
    rot = rot.clone().requires_grad_()
    energy = prior.mixture_energy(rot)
    assert float(energy) == pytest.approx(0.0, abs=1e-9)
    energy.sum().backward()
    assert float(rot.grad.abs().max()) < 1e-7
    g = torch.Generator().manual_seed(0)
    other = rot.detach() @ axis_angle_to_rotmat(torch.randn(8, 24, 3, dtype=F64, generator=g) * 0.2)
    assert (prior.mixture_energy(other) > 1.0).all()  # >= 0, and away from the mean it rises


def test_joint_limits_zero_inside_positive_outside_and_match_the_sampler(prior):
    from hmrkit.data.synthetic import poses as P

    inside = torch.from_numpy(P.PoseSampler(seed=5).sample_numpy(64))
    assert float(prior.limit_energy(inside).abs().max()) < 1e-20
    g = torch.Generator().manual_seed(3)
    wild = axis_angle_to_rotmat(torch.randn(64, 24, 3, dtype=F64, generator=g) * 1.2)
    np.testing.assert_allclose(prior.limit_violation(wild).numpy(), P.limit_violation(wild.numpy()),
                               atol=1e-8)
    assert (prior.limit_energy(wild) > 0).all()
    # the knee flexes one way: hyperextension costs more the further it goes
    knee = P.JOINT_NAMES.index("left_knee")
    costs = []
    for deg in (-20.0, -40.0, -60.0):
        angles = np.zeros((1, 24, 3))
        angles[0, knee, 0] = deg
        costs.append(float(prior.limit_energy(torch.from_numpy(P.joint_angles_to_rotmat(angles)))))
    assert 0 < costs[0] < costs[1] < costs[2]


def test_prior_energies_match_a_naive_loop_on_the_fast_logarithm(prior):
    """The whitened one-matmul mixture against the textbook per-component quadratic form, and
    the limits against the synthetic engine's numpy reference, on poses whose angles all stay
    below 170 deg (the logarithm's fast path, where the shoulder twist is read from the
    rotation vector instead of a quaternion)."""
    from hmrkit.data.synthetic import poses as P

    g = torch.Generator().manual_seed(11)
    base = torch.from_numpy(P.PoseSampler(seed=9).sample_numpy(48))
    kick = axis_angle_to_rotmat(torch.randn(48, 24, 3, dtype=F64, generator=g) * 0.5)
    rot = base @ kick
    angle = torch.linalg.norm(rotmat_to_axis_angle(rot), dim=-1)
    rot = torch.where((angle < math.radians(170))[..., None, None], rot, base)
    x = roma.rotmat_to_rotvec(rot[:, 1:]).reshape(48, -1)
    naive = []
    for b in range(48):
        per = []
        for k in range(len(prior.weights)):
            d = x[b] - prior.means[k]
            per.append(0.5 * d @ torch.linalg.inv(prior.covariances[k]) @ d
                       - torch.log(prior.weights[k]) + 0.5 * torch.logdet(prior.covariances[k]))
        naive.append(min(per))
    naive = torch.stack(naive)
    c = -torch.log(prior.weights) + 0.5 * torch.logdet(prior.covariances)
    torch.testing.assert_close(prior.mixture_energy(rot), naive - c.min(), atol=1e-8, rtol=1e-10)
    np.testing.assert_allclose(prior.limit_violation(rot).numpy(), P.limit_violation(rot.numpy()),
                               atol=1e-8)
    assert (prior.limit_violation(rot) > 0).any()  # the kicks do leave the limits
    mixture, limits = prior.energies(rot)
    torch.testing.assert_close(mixture, prior.mixture_energy(rot))
    torch.testing.assert_close(limits, prior.limit_energy(rot))


def test_prior_takes_smpl_poses_through_the_rest_offsets(prior):
    from hmrkit.data.synthetic import poses as P

    a_pose = P.PoseSampler(seed=7).sample_numpy(8)
    t_pose = P.change_rest(a_pose, "t_pose")
    smpl = PosePrior.load(rest="t_pose").to(F64)
    torch.testing.assert_close(smpl.mixture_energy(torch.from_numpy(t_pose)),
                               prior.mixture_energy(torch.from_numpy(a_pose)))
    torch.testing.assert_close(smpl.limit_violation(torch.from_numpy(t_pose)),
                               prior.limit_violation(torch.from_numpy(a_pose)), atol=1e-8, rtol=0)


def test_prior_file_with_root_limits_is_refused_naming_the_file(tmp_path):
    """The limits are indexed by body joint (1-23): a file that limits the root is an error."""
    from hmrkit.io import load_npz_with_header, save_npz_with_header

    arrays, header = load_npz_with_header(POSE_PRIOR_FILE, "pose prior")
    arrays["box_joints"] = np.concatenate([[0], arrays["box_joints"]])
    bad = tmp_path / "root_limits.npz"
    save_npz_with_header(bad, arrays, header)
    with pytest.raises(ValueError, match=r"root_limits\.npz: joint limits on the root"):
        PosePrior.load(bad)


def test_shipped_prior_file_holds_the_synthetic_limits_and_says_how_it_was_made():
    from hmrkit.data.synthetic import poses as P
    from hmrkit.io import load_npz_with_header

    arrays, header = load_npz_with_header(POSE_PRIOR_FILE, "pose prior")
    np.testing.assert_allclose(arrays["joint_frames"], P.JOINT_FRAMES)
    np.testing.assert_allclose(arrays["box"], P._BOX)
    np.testing.assert_allclose(arrays["rest_offsets"], P.REST_OFFSETS)
    assert float(arrays["shoulder_cone_deg"]) == P.SHOULDER_LIMIT.cone_deg
    assert "PoseSampler" in header["fitted_on"]["sampler"]
    val = header["validation"]
    assert val["mean_log_likelihood"]["mixture_heldout"] > val["mean_log_likelihood"][
        "one_gaussian_heldout"]
    assert val["heldout_within_limits"] == 1.0
    assert "make_pose_prior.py" in header["command"]


def test_fit_gmm_recovers_a_toy_mixture():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 2, dtype=F64, generator=g) * 0.3 + torch.tensor([2.0, 0.0], dtype=F64)
    b = torch.randn(1000, 2, dtype=F64, generator=g) * torch.tensor([0.2, 0.6], dtype=F64) - 2
    gmm = fit_gmm(torch.cat([a, b]), components=2, seed=1, reg=1e-6)
    order = torch.argsort(gmm["means"][:, 0], descending=True)
    np.testing.assert_allclose(gmm["weights"][order].numpy(), [0.75, 0.25], atol=0.02)
    np.testing.assert_allclose(gmm["means"][order].numpy(), [[2, 0], [-2, -2]], atol=0.05)
    np.testing.assert_allclose(gmm["covariances"][order[1]].diagonal().numpy(), [0.04, 0.36],
                               rtol=0.15)
    ll = gmm["log_likelihood"]
    assert (ll[1:] >= ll[:-1] - 1e-9).all()  # EM never decreases the likelihood
    x = torch.zeros(1, 2, dtype=F64)
    ref = sum(float(w) * float(torch.exp(torch.distributions.MultivariateNormal(
        m, c).log_prob(x))) for w, m, c in zip(gmm["weights"], gmm["means"],
                                                 gmm["covariances"], strict=True))
    assert float(gmm_log_likelihood(x, gmm["weights"], gmm["means"], gmm["covariances"])) == \
        pytest.approx(math.log(ref), rel=1e-10)


# --------------------------------------------------------------------------- round trips
def test_round_trip_camera_stage_float64(body, prior):
    """Known body, perturbed root orientation and translation: the camera stage finds them
    back from noise-free projected keypoints to a fraction of a millimetre."""
    pose, betas, transl, camera, g = _person(body)
    _, kp2, _ = _keypoints(body, pose, betas, transl, camera, ("joints", "blazepose33"))
    init = pose.clone()
    init[:, 0] = pose[:, 0] @ axis_angle_to_rotmat(torch.randn(2, 3, dtype=F64, generator=g) * 0.1)
    start = transl + torch.tensor([0.1, -0.1, 0.3], dtype=F64)
    cfg = FitConfig(iterations=0, camera_iterations=300, lr=0.02, schedule="cosine", tol=0.0)
    fit = Fitter(body, cfg, prior).fit(init, betas, start, camera, Targets(keypoints2d=kp2))
    assert fit.status == ["ok", "ok"] and fit.iterations == 300
    torch.testing.assert_close(fit.transl, transl, atol=1e-5, rtol=0)
    torch.testing.assert_close(fit.rotmat, pose, atol=1e-5, rtol=0)


def test_the_truth_is_the_minimum_of_the_objective_float64(body, prior):
    """At the truth every data term is zero and so is the gradient: the objective's minimum
    is the truth (Adam itself jitters around a minimum with steps of about ``lr``, which the
    round trips below see through a cosine schedule)."""
    pose, betas, transl, camera, _ = _person(body)
    _, kp2, kp3 = _keypoints(body, pose, betas, transl, camera)
    fitter = Fitter(body, FitConfig(**NO_PRIORS), prior)
    targets, _ = Targets(keypoints2d=kp2, keypoints3d=kp3).sanitized()
    posing = _Posing(body, tuple(kp2), False)
    rot, cam = (x.clone().requires_grad_() for x in fitter._to_params(pose, transl))
    shp = betas.clone().requires_grad_()
    terms = fitter._terms(posing, rot, shp, cam, camera, targets, torch.ones(2, dtype=F64))
    assert float(terms["keypoints"].max()) < 1e-20
    assert float(terms["keypoints3d"].max()) < 1e-10  # the 1e-16 m^2 floor under the root
    sum(terms.values()).sum().backward()
    for p in (rot, shp, cam):
        assert float(p.grad.abs().max()) < 1e-9


def test_round_trip_pose_shape_translation_float64(body, prior):
    """Perturbed pose, shape and translation pulled back by 2D keypoints and root-aligned 3D
    keypoints of the same body: the reprojection error goes to a small fraction of a pixel
    and the 3D joints come back within millimetres."""
    pose, betas, transl, camera, g = _person(body)
    out, kp2, kp3 = _keypoints(body, pose, betas, transl, camera)
    init = pose @ axis_angle_to_rotmat(torch.randn(2, 24, 3, dtype=F64, generator=g) * 0.05)
    start_betas, start_transl = betas + 0.3, transl + torch.tensor([0.05, -0.05, 0.2], dtype=F64)
    cfg = FitConfig(iterations=300, lr=0.01, schedule="cosine", tol=0.0, **NO_PRIORS)
    fit = Fitter(body, cfg, prior).fit(init, start_betas, start_transl, camera,
                                      Targets(keypoints2d=kp2, keypoints3d=kp3))
    assert fit.status == ["ok", "ok"]

    def errors(rotmat, b, t):
        o = body(rotmat[:, 0], rotmat[:, 1:], b)
        px = camera.project(o.joints, t) - camera.project(out.joints, transl)
        mm = ((o.joints + t[:, None]) - (out.joints + transl[:, None])).norm(dim=-1) * 1000
        return px.norm(dim=-1).mean(1), mm.mean(1)

    px0, mm0 = errors(init, start_betas, start_transl)
    px1, mm1 = errors(fit.rotmat, fit.betas, fit.transl)
    assert (px0 > 10).all() and (mm0 > 150).all()
    assert (px1 < 1.0).all(), px1
    assert (mm1 < 10).all(), mm1
    assert float((fit.betas[:, 0] - betas[:, 0]).abs().max()) < 0.05  # the dominant shape axis
    for k in fit.losses:  # every term is reported; the data terms fell
        assert fit.losses[k].shape == (2,)
    assert (fit.losses["keypoints"] < 1e-3 * fit.initial_losses["keypoints"]).all()


@pytest.mark.slow
def test_compiled_loss_fits_like_the_eager_one(body):
    """``FitConfig(compile=True)``: the same fit (keypoints, every prior, 20 iterations) as
    eager, float32, to float tolerance; compiling takes a minute or more with a cold cache."""
    pose, betas, transl, camera, g = _person(body, B=3)
    _, kp2, _ = _keypoints(body, pose, betas, transl, camera, ("blazepose33",))
    init = pose @ axis_angle_to_rotmat(torch.randn(3, 24, 3, dtype=F64, generator=g) * 0.1)
    args = [x.float() for x in (init, betas, transl)]
    targets = Targets(keypoints2d={k: v.float() for k, v in kp2.items()})
    body32 = load_body_model("anny24")  # float32 (the fixtures are float64 and shared)
    fits = [Fitter(body32, FitConfig(iterations=20, tol=0.0, compile=c)).fit(
        *args, camera.to(torch.float32), targets) for c in (False, True)]
    assert fits[1].status == ["ok"] * 3
    assert fits[1].losses["keypoints"].max() < 0.2 * fits[1].initial_losses["keypoints"].min()
    torch.testing.assert_close(fits[1].vertices, fits[0].vertices, atol=2e-4, rtol=0)
    for k in fits[0].losses:
        torch.testing.assert_close(fits[1].losses[k], fits[0].losses[k], atol=1e-4, rtol=1e-3)


def test_axis_angle_rotations_and_priors_fit_too(body, prior):
    pose, betas, transl, camera, g = _person(body, B=1)
    _, kp2, _ = _keypoints(body, pose, betas, transl, camera, ("blazepose33",))
    init = pose @ axis_angle_to_rotmat(torch.randn(1, 24, 3, dtype=F64, generator=g) * 0.1)
    fit = Fitter(body, FitConfig(iterations=40, rotation="axis_angle", tol=0.0), prior).fit(
        init, betas, transl, camera, Targets(keypoints2d=kp2))
    assert fit.status == ["ok"]
    assert set(fit.losses) == {"keypoints", "pose_prior", "joint_limits", "shape"}
    assert fit.losses["keypoints"] < 0.2 * fit.initial_losses["keypoints"]


def test_early_exit_when_the_loss_stops_changing(body, prior):
    pose, betas, transl, camera, _ = _person(body, B=1)
    _, kp2, _ = _keypoints(body, pose, betas, transl, camera, ("blazepose33",))
    fit = Fitter(body, FitConfig(iterations=100, tol=1e-2, patience=3, **NO_PRIORS), prior).fit(
        pose, betas, transl, camera, Targets(keypoints2d=kp2))
    assert fit.iterations < 100 and fit.status == ["ok"]


# --------------------------------------------------------------------------- bad input
def test_bad_persons_are_left_unchanged_with_a_reason(body, prior):
    """One batch: a good person, one with no visible keypoint, one with a NaN estimate, one
    behind the camera, one with a degenerate box, one with some NaN keypoints (ignored)."""
    B = 6
    pose, betas, transl, camera, g = _person(body, B=B)
    _, kp2, _ = _keypoints(body, pose, betas, transl, camera, ("blazepose33",))
    kp = kp2["blazepose33"].clone()
    init = pose @ axis_angle_to_rotmat(torch.randn(B, 24, 3, dtype=F64, generator=g) * 0.1)
    start = transl.clone()
    kp[1, :, 2] = 0.0  # no visible keypoint
    init[2, 5, 0, 0] = float("nan")  # NaN estimate
    start[3, 2] = -1.0  # behind the camera
    kp[5, :4, :2] = float("nan")  # a few NaN keypoints: ignored, the rest fitted
    size = torch.full((B,), 300.0, dtype=F64)
    size[4] = 0.0  # degenerate box
    targets = Targets(keypoints2d={"blazepose33": kp}, person_size=size)
    fit = Fitter(body, FitConfig(iterations=20, tol=0.0), prior).fit(init, betas, start, camera,
                                                                     targets)
    assert fit.status[0] == fit.status[5] == "ok"
    assert "no target point" in fit.status[1]
    assert "not finite" in fit.status[2]
    assert "behind the camera" in fit.status[3]
    assert "degenerate box" in fit.status[4]
    assert fit.changed.tolist() == [True, False, False, False, False, True]
    for b in (1, 3, 4):
        assert torch.equal(fit.rotmat[b], init[b]) and torch.equal(fit.transl[b], start[b])
        assert torch.equal(fit.betas[b], betas[b])
    assert torch.isnan(fit.rotmat[2]).any()  # returned as given
    for b in (0, 5):
        assert not torch.equal(fit.rotmat[b], init[b]) and torch.isfinite(fit.rotmat[b]).all()
        assert fit.losses["keypoints"][b] < fit.initial_losses["keypoints"][b]
    assert torch.isnan(fit.losses["keypoints"][1])  # not fitted: no loss


def test_a_person_whose_loss_turns_nan_keeps_its_last_finite_parameters(body, prior,
                                                                        monkeypatch):
    pose, betas, transl, camera, g = _person(body, B=2)
    _, kp2, _ = _keypoints(body, pose, betas, transl, camera, ("blazepose33",))
    init = pose @ axis_angle_to_rotmat(torch.randn(2, 24, 3, dtype=F64, generator=g) * 0.1)
    calls = {"n": 0}
    original = PosePrior.energies

    def poisoned(self, rotmat):
        calls["n"] += 1
        e, limits = original(self, rotmat)
        if calls["n"] > 6:  # from the 6th iteration on, person 1's loss is NaN
            e = e.clone()
            e[1] = float("nan")
        return e, limits

    monkeypatch.setattr(PosePrior, "energies", poisoned)
    fit = Fitter(body, FitConfig(iterations=15, tol=0.0), prior).fit(
        init, betas, transl, camera, Targets(keypoints2d=kp2))
    assert fit.status[0] == "ok"
    assert fit.status[1].startswith("stopped: non-finite loss at iteration 6")
    assert torch.isfinite(fit.rotmat).all() and torch.isfinite(fit.transl).all()
    assert not torch.equal(fit.rotmat[1], init[1])  # it had moved before it stopped
