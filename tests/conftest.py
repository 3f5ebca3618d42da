"""Shared fixtures: a tiny real synthetic corpus (WebDataset shards) built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never talk to W&B's servers: runs that log to W&B are offline runs written to disk.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")



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
