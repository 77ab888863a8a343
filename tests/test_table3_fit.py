"""``benchmarks/table3_fit.py`` on three persons of the tiny synthetic split: the re-rendered
initial estimates match the samples' masks, the fit to the true field brings the body closer
to the truth, the zero field's fit barely moves it, and the script end to end (an untrained
network predicts the zero field: every head starts at zero)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import table3_fit as t3fit  # noqa: E402


@pytest.fixture(scope="module")
def samples(tiny_split):
    from hmrkit.models.displacement_data import SampleConfig, make_samples

    cfg = SampleConfig(resolution=32, crop_size=48, seed=1)
    return make_samples(tiny_split, None, cfg, limit=3, texture="none", progress=False)


@pytest.mark.filterwarnings("ignore")
def test_true_field_fit_beats_the_initial_estimate_and_zero_field_barely_moves(
        samples, one_thread):
    from hmrkit.body import load_body_model
    from hmrkit.fit import Fitter
    from hmrkit.models.dense_refiner import DENSE_CONFIG

    people = t3fit.load_people(samples)
    initial = t3fit.initial_geometry(samples, people)
    assert initial.mask.any() and np.array_equal(initial.mask, samples["mask"])
    body = load_body_model("anny24")
    fitter = Fitter(body, DENSE_CONFIG)
    before = t3fit.initial_metrics(initial, people, body)
    true = t3fit.fit_field(samples["displacement"], initial, people, fitter)
    zero = t3fit.fit_field(np.zeros_like(samples["displacement"]), initial, people, fitter)
    assert before["pve"].mean() > 20  # perturbed truth: something to undo
    assert (true["fitted"] == 1).all() and (zero["fitted"] == 1).all()
    assert true["pve"].mean() < 0.7 * before["pve"].mean()
    assert true["pa_mpjpe"].mean() < before["pa_mpjpe"].mean()
    assert true["error_2d"].mean() < 0.5 * before["error_2d"].mean()
    assert np.abs(zero["pve"] - before["pve"]).max() < 0.1 * before["pve"].mean()


@pytest.mark.filterwarnings("ignore")
def test_script_end_to_end(samples, tmp_path, one_thread):
    from hmrkit.models.displacement import INPUTS, DisplacementNet, NetConfig, save_displacement_net
    from hmrkit.models.displacement_data import save_samples

    save_samples(tmp_path / "none.npz", samples)
    net = DisplacementNet(NetConfig(renders=INPUTS["no_texture"], width=4, blocks=1, channels=8,
                                    stacks=1, depth=1, resolution=32))
    save_displacement_net(net, tmp_path / "net.pt")
    assert t3fit.main(["--nets", f"untrained={tmp_path / 'net.pt'}", "--tests",
                       f"none={tmp_path / 'none.npz'}", "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "table3_fit.json").read_text())
    assert record["facts"]["mask_mismatch_pixels"] == {"none": 0}
    per_person = json.loads((tmp_path / "out" / "table3_fit_per_person.json").read_text())
    assert len(per_person["none"]["zero field"]["pve"]) == 3
    assert record["facts"]["fits"] == 2  # the untrained network's field is the zero field's
    row = record["table"]["all"]["none"]
    assert row["n"] == 3
    assert row["untrained"] == row["zero field"]
    assert row["true field"]["epe"] == 0 and row["zero field"]["epe"] > 0
    assert row["true field"]["pve"] < row["initial estimate"]["pve"]
    md = (tmp_path / "out" / "table3_fit.md").read_text()
    assert md.startswith("**all** (3 persons") and "| none | true field | 0.00 |" in md


@pytest.mark.filterwarnings("ignore")
def test_fit_args_change_the_fit(samples, tmp_path, one_thread):
    """``--fit-arg iterations=0``: no fit runs, so every field leaves the estimate as it was;
    a field FitConfig does not have is a one-line error."""
    from hmrkit.models.displacement import INPUTS, DisplacementNet, NetConfig, save_displacement_net
    from hmrkit.models.displacement_data import save_samples

    save_samples(tmp_path / "none.npz", samples)
    net = DisplacementNet(NetConfig(renders=INPUTS["no_texture"], width=4, blocks=1, channels=8,
                                    stacks=1, depth=1, resolution=32))
    save_displacement_net(net, tmp_path / "net.pt")
    common = ["--nets", f"untrained={tmp_path / 'net.pt'}", "--tests",
              f"none={tmp_path / 'none.npz'}", "--out", str(tmp_path / "out")]
    assert t3fit.main(common + ["--fit-arg", "iterations=0"]) == 0
    record = json.loads((tmp_path / "out" / "table3_fit.json").read_text())
    assert record["fit"] == {"base": "DENSE_CONFIG", "iterations": 0}
    row = record["table"]["all"]["none"]
    assert row["true field"]["pve"] == pytest.approx(row["initial estimate"]["pve"], abs=1e-3)
    with pytest.raises(SystemExit, match="--fit-arg"):
        t3fit.main(common + ["--fit-arg", "no_such_field=1"])
