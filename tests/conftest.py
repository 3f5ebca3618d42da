"""Shared fixtures: a tiny real synthetic corpus (WebDataset shards) built once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Tests never talk to W&B's servers: runs that log to W&B are offline runs written to disk.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Numerical tests of our kernels run on every device here: the CPU, and a GPU where there is one
# (scripts/device-bench.sh runs them there before the benchmarks).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> Iterator[torch.device]:
    """A device to compute on. On CUDA, TF32 is off: fp32 tolerances are stated for fp32 arithmetic."""
    if request.param != "cuda":
        yield torch.device(request.param)
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield torch.device("cuda")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved



@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 synthetic clips of 4–7 s (about 28 train / 4 valid / 4 test) in shards of 8."""
    from lightning_tagging.data.build import build_shards
    from lightning_tagging.data.sources.synthetic import SyntheticSource

    out = tmp_path_factory.mktemp("tiny_corpus")
    build_shards(SyntheticSource(36, seed=1, min_seconds=4.0, max_seconds=7.0), out, workers=1, shard_size=8,
                 progress=False)
    return out


@pytest.fixture(scope="session")
def musicnn_wheel(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """musicnn-0.1.0-py3-none-any.whl from PyPI (pip download), kept in pytest's cache across runs."""
    from lightning_tagging.weights.musicnn_source import download_wheel

    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    folder = Path(cache.mkdir("musicnn-wheel")) if cache is not None else tmp_path_factory.mktemp("wheel")
    return download_wheel(folder)
