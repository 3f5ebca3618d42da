"""FitTimer's accounting on real Lightning fits whose data and post-step work are real sleeps.

Only lower bounds that the sleeps guarantee are asserted (this machine is noisy): every timed
step's fetch is counted as waiting, and work after a step's end hook that is not a fetch is not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lightning_tagging.bench.fit_timer import FitTimer

FETCH_S = 0.02  # sleep per sample fetched: ≥ 2 × this per batch of 2
AFTER_STEP_S = 0.03  # sleep after every step's end hooks, standing in for Lightning's post-step .item() host sync
WARMUP, STEPS = 1, 4


def slow_sample(index: int) -> torch.Tensor:
    time.sleep(FETCH_S)
    return torch.full((3,), float(index))


class SlowSamples(Dataset):
    """Sized: Lightning fetches each batch just before its step."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> torch.Tensor:
        return slow_sample(index)


class SlowStream(IterableDataset):
    """Unsized, like the training patches: Lightning prefetches one batch ahead."""

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (slow_sample(i) for i in range(64))


class SlowAfterStep(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).square().mean()
        self.log("loss", loss, prog_bar=True)  # as the tagging module does: converted with .item() after each step
        return loss

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        time.sleep(AFTER_STEP_S)  # runs after the callbacks' end hooks, in the loop's end-to-start gap

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("dataset", [SlowSamples(), SlowStream()], ids=["sized", "stream"])
def test_window_counts_one_fetch_per_step_as_waiting_and_nothing_else(dataset: Dataset) -> None:
    timer = FitTimer(warmup=WARMUP, steps=STEPS)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=timer.max_steps, max_epochs=-1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer.callback], profiler=timer.profiler)
    trainer.fit(SlowAfterStep(), train_dataloaders=DataLoader(dataset, batch_size=2, num_workers=0))
    timing = timer.timing()
    assert timer.callback.batches_started == WARMUP + STEPS + 1 == trainer.global_step
    assert timing.steps == STEPS and timing.fetches == STEPS  # the window holds whole loop periods
    assert timing.data_wait_s >= STEPS * 2 * FETCH_S
    assert timing.window_s - timing.data_wait_s >= STEPS * AFTER_STEP_S  # post-step work is not data waiting
    assert 0.0 < timing.data_wait_fraction < 1.0
    assert timing.ms_per_step == pytest.approx(1000 * timing.window_s / STEPS)
    assert timing.clips_per_s(2) == pytest.approx(2 * STEPS / timing.window_s)


def test_timing_before_the_window_closed_raises() -> None:
    with pytest.raises(RuntimeError, match="0 of the 3 batches"):
        FitTimer(warmup=1, steps=1).timing()
