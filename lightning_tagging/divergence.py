"""Stopping a run whose loss became NaN or infinite, with a clear error instead of quiet results.

Once one step's loss is NaN, its gradients are too, and after that optimizer step every weight
is. Training would go on, validation would never again beat the last good epoch, and the run
would end "done" with test results of that older ``best.ckpt``: a matrix cell that looks fine
and is not. :class:`DivergenceCheck` counts non-finite losses on the device (no host sync per
step), reads the count every ``every_n_steps`` steps and at each epoch's end (one sync, summed
over DDP ranks, at the same step on every rank), and raises :class:`TrainingDiverged`.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lightning_tagging.errors import UserError


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the run stopped, its later weights are unusable."""


class DivergenceCheck(Callback):
    """Raise :class:`TrainingDiverged` once a training loss was not finite (checked every ``every_n_steps``).

    Args:
        every_n_steps: training batches between two reads of the count (and at every epoch's
            end). Each read waits for the device once; 100 costs well under 1 % of a step.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        if every_n_steps < 1:
            raise UserError(f"DivergenceCheck: every_n_steps must be ≥ 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._bad_steps = torch.zeros((), dtype=torch.int64)  # this rank, since the last read
        self._first_bad = torch.full((), -1, dtype=torch.int64)  # global step of the first, or -1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss.detach()).all()
            self._bad_steps = self._bad_steps.to(loss.device) + bad
            self._first_bad = torch.where(bad & (self._first_bad.to(loss.device) < 0),
                                          trainer.global_step, self._first_bad.to(loss.device))
        if (batch_idx + 1) % self.every_n_steps == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        local = self._bad_steps.to(trainer.strategy.root_device).float()  # NCCL reduces device tensors only
        total = int(trainer.strategy.reduce(local, reduce_op="sum").item())
        if total == 0:
            return
        first = int(self._first_bad)
        where = f", first at step {first} on this process" if first >= 0 else " on another process"
        raise TrainingDiverged(
            f"training diverged: the loss was NaN or infinite at {total} training step(s) of epoch "
            f"{trainer.current_epoch}{where}. Weights after that step are unusable; checkpoints written "
            "before it are intact. Lower the learning rate, use 32-true precision, or check the data; "
            "then start the run again."
        )
