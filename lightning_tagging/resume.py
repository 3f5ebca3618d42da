"""Resuming a run where it stopped: which checkpoint, and the same training batches as before.

`resume_checkpoint` picks the newest of ``<run dir>/checkpoints/last.ckpt`` (written after every
validation) and ``preempted.ckpt`` (written mid-epoch on a preemption signal, see
``preemption.py``).

`ResumableTrainLoader` makes the training stream resumable mid-epoch. The training stream of
epoch *e* is a fixed function of (seed, e, rank, worker) (``data/streams.py``), so resuming at
batch *k* of epoch *e* means: start the stream of epoch *e* and drop its first *k* batches
(they are decoded again, not trained on again). Lightning saves and restores the loader's
``state_dict`` with the checkpoint (its ``_Stateful`` protocol). Every epoch starts the stream of
the epoch being trained, which a checkpoint written at an epoch's end needs too: the DataModule
builds its dataset during restore, when Lightning still counts the finished epoch as current.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lightning_tagging.preemption import PREEMPTED_CHECKPOINT


def resume_checkpoint(run_dir: str | Path) -> str | None:
    """The checkpoint an interrupted run in ``run_dir`` continues from (the newest), or None."""
    folder = Path(run_dir) / "checkpoints"
    candidates = [p for p in (folder / "last.ckpt", folder / PREEMPTED_CHECKPOINT) if p.is_file()]
    return str(max(candidates, key=lambda p: p.stat().st_mtime_ns)) if candidates else None


class ResumableTrainLoader:
    """A training DataLoader over an epoch-seeded stream, resumable mid-epoch by replaying.

    Args:
        loader: the DataModule's training loader; its dataset has an ``epoch`` attribute
            (the epoch whose stream the first ``iter()`` yields).
        trainer: the Trainer, whose loop progress says where training stands.
    """

    def __init__(self, loader: Any, trainer: pl.Trainer) -> None:
        self.loader, self.trainer = loader, trainer
        self._restored: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        # dataset, batch_size, num_workers, ... as the wrapped loader has them
        return getattr(self.__dict__["loader"], name)

    def state_dict(self) -> dict[str, int]:
        """Where the training loop stands in the current epoch (saved into every checkpoint)."""
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        length = self.trainer.num_training_batches  # limit_train_batches may cut the epoch short
        return {
            "epoch": self.trainer.current_epoch,
            "batches": progress.processed,
            "length": int(length) if math.isfinite(length) else -1,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._restored = dict(state)

    def __iter__(self) -> Iterator[Any]:
        # A generator: the body runs at the first next(), when Lightning has restored its state
        # and current_epoch is the epoch about to be trained.
        epoch, skip = self.trainer.current_epoch, 0
        if self._restored is not None:
            state, self._restored = self._restored, None
            if state["epoch"] == epoch and (state["length"] < 0 or state["batches"] < state["length"]):
                skip = state["batches"]  # resumed mid-epoch: these batches were trained on already
        dataset = getattr(self.loader, "dataset", None)
        if hasattr(dataset, "epoch"):
            # The stream of the epoch being trained. (Set before iter(): persistent workers copy the
            # dataset when they start, and count epochs on from there.)
            dataset.epoch = epoch
        iterator = iter(self.loader)
        for _ in range(skip):
            next(iterator)
        yield from iterator
