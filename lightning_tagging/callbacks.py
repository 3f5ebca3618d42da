"""Callbacks that give every run the same directory layout.

    <run dir>/                 = trainer.default_root_dir, e.g. runs/demo
        config.yaml            the fully resolved config (LightningCLI)
        checkpoints/best.ckpt  best validation PR-AUC
        checkpoints/last.ckpt  latest state, for resuming
        checkpoints/preempted.ckpt  taken on a preemption signal (preemption.py), mid-epoch
        frontend_values.csv    learned front-end scalars (log_learn's alpha, beta) at every step
                               (written in blocks; complete up to every checkpoint)
        results.json           test metrics, written when a test run ends
        wandb/                 the W&B run (offline unless W&B is configured)

Nothing depends on timestamps, so a rerun of the same config finds its own state.
"""

from __future__ import annotations

import csv
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn

from lightning_tagging.jsonio import write_json_atomically


class RunCheckpoint(ModelCheckpoint):
    """``best.ckpt`` (by validation PR-AUC) and ``last.ckpt`` in ``<run dir>/checkpoints``."""

    def __init__(self, monitor: str = "val/pr_auc", mode: str = "max", **kwargs: Any) -> None:
        super().__init__(
            monitor=monitor, mode=mode, filename="best", save_last=True, auto_insert_metric_name=False, **kwargs
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)

    # Lightning (2.6) rewrites last.ckpt only when the same step also produced a best checkpoint;
    # resuming needs the latest state at every save point, improved or not.
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer)
        super().on_train_epoch_end(trainer, pl_module)
        if due:
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer)
        super().on_validation_end(trainer, pl_module)
        if due:
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self._last_global_step_saved != trainer.global_step:  # no best checkpoint at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class FrontendTrajectory(Callback):
    """Writes the front-end's learned scalars (e.g. alpha, beta) to a CSV: one row per optimizer step.

    Loggers are throttled by ``log_every_n_steps``; this file is not, so the report can
    plot the exact trajectory without network access.

    Reading the values as numbers every step would make the host wait for the GPU every step,
    so each step's values are kept on the device and written in blocks (one host read per block):
    every ``flush_every_n_steps`` steps or ``flush_every_s`` seconds, whichever comes first, and
    always at an epoch's end, at training's end, when training fails, and before every checkpoint
    is written, so the file holds every step up to any checkpoint a run may resume from.

    Args:
        flush_every_n_steps: most steps held before they are written.
        flush_every_s: most seconds a step is held before it is written (checked after each step).
    """

    filename = "frontend_values.csv"

    def __init__(self, flush_every_n_steps: int = 100, flush_every_s: float = 5.0) -> None:
        self.flush_every_n_steps, self.flush_every_s = flush_every_n_steps, flush_every_s
        self._names: list[str] = []
        self._steps: list[int] = []  # steps held, not yet in the file
        self._values: list[torch.Tensor] = []  # one [n_names] tensor per held step, on the model's device
        self._last_step = 0  # newest step held or written
        self._flushed_at = 0.0  # time.monotonic() of the last write
        self._training = False

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # (After the checkpoint is restored, so global_step is where training resumes.)
        # A resumed run repeats the steps after its checkpoint: drop the rows an interrupted
        # attempt wrote past that point, so every step appears once.
        self._steps, self._values = [], []
        self._last_step, self._flushed_at, self._training = trainer.global_step, time.monotonic(), True
        path = Path(trainer.default_root_dir) / self.filename
        if not path.exists():
            return
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= trainer.global_step]
        if len(kept) != len(rows):
            tmp = path.with_suffix(".tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows(kept)
            os.replace(tmp, path)

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._hold(trainer, pl_module)
        if len(self._steps) >= self.flush_every_n_steps or time.monotonic() - self._flushed_at >= self.flush_every_s:
            self._flush(trainer)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
        self._training = False

    @rank_zero_only
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._training:  # a callback ahead of this one may checkpoint a step this one has not seen yet
            self._hold(trainer, pl_module)
        self._flush(trainer)

    @rank_zero_only
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._training = False
        try:
            self._flush(trainer)
        except Exception as error:  # e.g. a failed GPU: never hide the exception that stopped training
            rank_zero_warn(f"{self.filename}: could not write the last {len(self._steps)} steps: {error}")

    def _hold(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keep the values after the current optimizer step, once per step (not per accumulated batch)."""
        if trainer.global_step <= self._last_step:
            return
        values = pl_module.frontend.logged_values()
        if not values:
            return
        self._names = list(values)
        self._steps.append(trainer.global_step)
        self._values.append(torch.stack([value.detach() for value in values.values()]))  # a copy, on the device
        self._last_step = trainer.global_step

    def _flush(self, trainer: pl.Trainer) -> None:
        """Append the held steps to the CSV: one device-to-host copy for all of them."""
        self._flushed_at = time.monotonic()
        if not self._steps:
            return
        rows = torch.stack(self._values).cpu().tolist()  # [n_steps, n_names]
        path = Path(trainer.default_root_dir) / self.filename
        new_file = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["step", *self._names])
            writer.writerows([step, *(f"{v:.6g}" for v in row)] for step, row in zip(self._steps, rows, strict=True))
        self._steps, self._values = [], []


class StepSeed(Callback):
    """Seeds the random generators before every training step from (global seed, step).

    Dropout and any other draw of a step then depend only on the step number, not on how many
    draws happened before (data loader start-ups, validation, an earlier attempt): a run resumed
    from a checkpoint takes exactly the steps an uninterrupted run would have taken.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        base = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = (base * 1_000_003 + trainer.global_step) % 2**32
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)


class ResultsWriter(Callback):
    """Writes ``results.json`` when a test run ends (atomically, so a crash never leaves half a file)."""

    filename = "results.json"

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        if results is None:
            return
        datamodule = trainer.datamodule
        record = {
            **{k: v for k, v in results.items() if k != "per_tag"},
            "checkpoint": trainer.ckpt_path,
            "global_step": trainer.global_step,
            "data": datamodule.describe() if hasattr(datamodule, "describe") else {},
            "frontend_class": type(pl_module.frontend).__name__,
            "backbone_class": type(pl_module.backbone).__name__,
            "n_parameters": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "per_tag": results["per_tag"],
        }
        write_json_atomically(Path(trainer.default_root_dir) / self.filename, record)
