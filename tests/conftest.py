"""Shared fixtures: a tiny synthetic training split, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory) -> Path:
    """6 synthetic scenes (seed 4) in one shard: the tiny config's training data."""
    from hmrkit.cli import main

    out = tmp_path_factory.mktemp("synth") / "train"
    assert main(["synth", "--n", "6", "--out", str(out), "--seed", "4"]) == 0
    return out


@pytest.fixture
def one_thread():
    """torch on one thread for the test (timings and float reductions stay steady)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
