"""Batches are stacked straight into shared memory in DataLoader workers, with the values np.stack gives."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.data.shared_batch import stack_for_transfer


class StackedInPlace(IterableDataset):
    """Yields one stacked batch, whether it was in shared memory where it was made, and np.stack's result."""

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(11).astype(np.float32) for _ in range(6)]
        stacked = stack_for_transfer(arrays)
        yield {"stacked": stacked, "shared_where_made": torch.tensor(stacked.is_shared()),
               "expected": torch.from_numpy(np.stack(arrays))}


@pytest.mark.parametrize("workers", [0, 1], ids=["main-process", "worker"])
def test_stacked_batches_are_shared_only_in_workers_and_equal_np_stack(workers: int) -> None:
    batch = next(iter(DataLoader(StackedInPlace(), batch_size=None, num_workers=workers)))
    assert bool(batch["shared_where_made"]) == (workers > 0)  # a worker's batch needs no copy to be sent
    assert batch["stacked"].dtype == torch.float32 and batch["stacked"].shape == (6, 11)
    assert torch.equal(batch["stacked"], batch["expected"])


class SharedWhereMade(IterableDataset):
    """Runs the training stream inside a worker and reports whether each batch was made in shared memory."""

    def __init__(self, batches: Iterable[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.batches:
            yield {name: torch.tensor(batch[name].is_shared()) for name in ("audio", "tags")}


def test_training_batches_are_made_in_shared_memory(tiny_corpus: Path) -> None:
    datamodule = TaggingDataModule(str(tiny_corpus), batch_size=4, num_workers=1, crop_samples=1000,
                                   patches_per_clip=2, shuffle_buffer=4, train_samples_per_epoch=8)
    patches = datamodule.train_dataloader().dataset  # TrainPatches, as the training loader's workers run it
    for report in DataLoader(SharedWhereMade(patches), batch_size=None, num_workers=1):
        assert bool(report["audio"]) and bool(report["tags"])
