"""data.train_size: nested subsets fixed by the subset seed, the same on every rank and worker, recorded.

The corpus here makes every clip recognisable from any patch of it (clip i is a constant
level), so the tests see exactly which clips training drew from.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_tagging.data.audio import pcm16_to_float
from lightning_tagging.data.build import build_shards
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.data.errors import DataError
from lightning_tagging.data.sources import Item, Source
from lightning_tagging.data.subsets import select_subset, subset_size

N_CLIPS = 60


def level(index: int) -> float:
    return round((index + 1) * 0.01 * 32768) / 32768  # exact in 16 bit


def constant_clip(index: int) -> np.ndarray:
    return np.full(8000, level(index), np.float32)


class LevelSource(Source):
    """Clip i: half a second at a constant level (i + 1) / 100, tag "odd" or "even"; all in train."""

    name = "levels"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:  # pragma: no cover - not a CLI source
        pass

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> LevelSource:  # pragma: no cover
        return cls()

    def items(self) -> Iterator[Item]:
        for i in range(N_CLIPS):
            yield Item(
                f"clip{i:03d}",
                "train" if i < 50 else "test",
                ("odd" if i % 2 else "even",),
                functools.partial(constant_clip, i),
            )

    def arguments(self) -> dict[str, Any]:
        return {}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("levels")
    build_shards(LevelSource(), out, workers=1, shard_size=7, progress=False)  # 50 train clips in 8 shards
    return out


def clips_in(batches: list[dict]) -> set[str]:
    levels = {round(float(v) * 100) - 1 for batch in batches for v in pcm16_to_float(batch["audio"])[:, 0]}
    return {f"clip{i:03d}" for i in levels}


def test_subsets_are_nested_and_fixed_by_their_own_seed() -> None:
    keys = [f"track{i}" for i in range(1000)]
    sizes = [0.01, 0.1, 0.5, 1.0]
    subsets = [select_subset(keys, size, subset_seed=7) for size in sizes]
    assert [len(s) for s in subsets] == [10, 100, 500, 1000]
    assert all(a < b for a, b in itertools.pairwise(subsets))  # nested
    assert select_subset(keys[::-1], 0.1, subset_seed=7) == subsets[1]  # order of keys does not matter
    assert select_subset(keys, 100, subset_seed=7) == subsets[1]  # a count is the same as the fraction
    assert select_subset(keys, 0.1, subset_seed=8) != subsets[1]  # another subset seed, other clips
    assert subset_size(None, 37) == 37 and subset_size(0.001, 37) == 1 and subset_size(1, 37) == 1
    assert subset_size(1.0, 37) == 37 and subset_size(20.0, 37) == 20  # 1e4-style whole floats are counts
    for bad in (0.0, 1.5, 0, 38, 38.0, "10%"):
        with pytest.raises(DataError, match="train_size"):
            subset_size(bad, 37)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_draws_only_from_the_subset_on_every_rank(
    root: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = select_subset([f"clip{i:03d}" for i in range(50)], 0.2, subset_seed=3)
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))  # as torchrun says it; no Trainer is attached here
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = TaggingDataModule(
            str(root),
            batch_size=10,
            num_workers=workers,
            crop_samples=4000,
            shuffle_buffer=20,
            train_size=0.2,
            subset_seed=3,
            seed=rank + 100,
            train_samples_per_epoch=400,
        )
        assert dm.train_keys == expected  # the same subset whatever the training seed and rank
        seen.append(list(dm.train_dataloader()))
    assert clips_in(seen[0]) <= expected and clips_in(seen[1]) <= expected
    assert clips_in(seen[0] + seen[1]) == expected  # 400 patches of 10 clips: every one is drawn
    assert len(seen[0]) == len(seen[1]) == 20  # ceil(400 / (10 × 2)) batches on each rank


def test_the_subset_is_recorded(root: Path) -> None:
    full = TaggingDataModule(str(root), crop_samples=4000).describe()
    assert full["train_size"] == 1.0 and full["train_clips"] == 50 and full["train_samples_per_epoch"] == 200
    small = TaggingDataModule(str(root), crop_samples=4000, train_size=7, subset_seed=1).describe()
    assert small["train_size"] == 7 and small["subset_seed"] == 1 and small["train_clips"] == 7
    assert small["train_samples_per_epoch"] == 28  # an epoch is a pass over the subset: 7 clips × 4 patches
    with pytest.raises(DataError, match="more clips than the 50"):
        TaggingDataModule(str(root), crop_samples=4000, train_size=51).train_dataloader()


@pytest.mark.parametrize(("given", "clips"), [("0.01", 200), ("1.0", 20000), ("10000", 10000), ("null", 20000)])
def test_the_config_keeps_fractions_and_counts_apart(given: str, clips: int) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(TaggingDataModule, "data")  # as LightningCLI reads `data:` of a config
    value = parser.parse_args(["--data.root", "x", "--data.train_size", given]).data.train_size
    # jsonargparse may hand 10000 over as 10000.0 (it depends on what it parsed before);
    # whole numbers above 1 are counts either way, and 1.0 is a fraction.
    assert subset_size(value, 20000) == clips


def test_lt_test_records_the_subset_in_results(root: Path, tmp_path: Path) -> None:
    from lightning_tagging.cli import main

    repo = Path(__file__).resolve().parents[1]
    assert main(["test", "--config", str(repo / "experiments" / "demo.yaml"), "--data.root", str(root),
                 "--data.num_workers", "0", "--data.train_size", "0.1", "--data.subset_seed", "5",
                 "--model.backbone.init_args.width", "0.1", "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path)]) == 0  # fmt: skip
    data = json.loads((tmp_path / "results.json").read_text())["data"]
    assert (data["train_size"], data["subset_seed"], data["train_clips"]) == (0.1, 5, 5)  # round(0.1 × 50)
