"""``benchmarks/table3_textures.py``: the zero field's EPE and the per-group means against naive
loops, and the script end to end on two tiny test sets (an untrained network is the zero
field: every head starts at zero)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import table3_textures as t3  # noqa: E402


def _samples(rng, n=5, s=6):
    mask = rng.random((n, 1, s, s)) > 0.4
    mask[0] = False  # nothing rendered: EPE 0
    return {"displacement": rng.normal(0, 3, (n, 2, s, s)).astype(np.float16), "mask": mask}


def test_zero_field_epe_is_the_mean_target_length_over_rendered_pixels():
    samples = _samples(np.random.default_rng(0))
    naive = []
    for d, m in zip(samples["displacement"].astype(np.float32), samples["mask"], strict=True):
        lengths = [np.hypot(d[0, i, j], d[1, i, j]) for i in range(6) for j in range(6)
                   if m[0, i, j]]
        naive.append(np.mean(lengths) if lengths else 0.0)
    np.testing.assert_allclose(t3.zero_field_epe(samples), naive, rtol=1e-5, atol=1e-6)


def test_group_means_per_init_kind():
    init = np.array([0, 2, 0, 2, 2])
    per = {"true": {"a": np.arange(5.0), "b": np.ones(5)}, "none": {"a": np.zeros(5),
                                                                    "b": np.arange(5.0) ** 2}}
    table = t3.group_means(per, init, ["perturbed", "model", "model_shape"])
    assert list(table) == ["all", "perturbed", "model_shape"]  # no "model" person
    assert table["all"]["true"] == {"n": 5, "a": 2.0, "b": 1.0}
    assert table["perturbed"]["true"]["a"] == 1.0 and table["perturbed"]["none"]["b"] == 2.0
    assert table["model_shape"]["none"] == {"n": 3, "a": 0.0, "b": (1 + 9 + 16) / 3}
    md = t3.markdown(table)
    assert "**model_shape** (3 persons)" in md and "| none | 0.00 | 8.67 |" in md


@pytest.mark.filterwarnings("ignore")
def test_script_end_to_end(tiny_split, tmp_path):
    import json

    from hmrkit.models.displacement import INPUTS, DisplacementNet, NetConfig, save_displacement_net
    from hmrkit.models.displacement_data import SampleConfig, make_samples, save_samples

    cfg = SampleConfig(resolution=32, crop_size=48, seed=1)
    for tex in ("true", "none"):
        save_samples(tmp_path / f"{tex}.npz", make_samples(tiny_split, None, cfg, limit=3,
                                                            texture=tex, progress=False))
    net = DisplacementNet(NetConfig(renders=INPUTS["full"], width=4, blocks=1, channels=8,
                                    stacks=1, depth=1, resolution=32))
    save_displacement_net(net, tmp_path / "net.pt")
    assert t3.main(["--nets", f"untrained={tmp_path / 'net.pt'}", "--tests",
                    f"true={tmp_path / 'true.npz'}", f"none={tmp_path / 'none.npz'}",
                    "--out", str(tmp_path / "out")]) == 0
    table = json.loads((tmp_path / "out" / "table3.json").read_text())["epe"]
    assert set(table) == {"all", "perturbed"}
    for row in table["all"].values():
        assert row["n"] == 3 and row["zero field"] > 0
        assert row["untrained"] == pytest.approx(row["zero field"], rel=1e-5)
    assert (tmp_path / "out" / "table3.md").read_text().startswith("**all** (3 persons)")
    with pytest.raises(SystemExit, match="NAME=FILE"):
        t3.main(["--nets", "oops", "--tests", "x=y", "--out", str(tmp_path)])
