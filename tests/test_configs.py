"""Every committed config parses: its keys exist and its values have the right types."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmrkit.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_are_found():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None), capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "class_path: hmrkit." in printed and "max_steps:" in printed


def test_a_registered_method_is_found_by_its_class_name(tmp_path, capsys):
    """``class_path`` takes the class path configs are written with, or the class name of a
    method of the registry (hmrkit.models.registry.import_methods)."""
    text = (CONFIGS[0].parent / "tiny-cpu.yaml").read_text()
    short = tmp_path / "short.yaml"
    short.write_text(text.replace("class_path: hmrkit.models.methods.HMR", "class_path: CLIFF"))
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(short), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path: hmrkit.models.methods.CLIFF" in capsys.readouterr().out
