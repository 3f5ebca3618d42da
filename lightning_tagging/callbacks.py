"""Callbacks that give every run the same directory layout.

    <run dir>/                 = trainer.default_root_dir, e.g. runs/demo
        config.yaml            the fully resolved config (LightningCLI)
        checkpoints/best.ckpt  best validation PR-AUC
        checkpoints/last.ckpt  latest state, for resuming
        checkpoints/hpc_ckpt_N.ckpt  taken on a preemption signal (preemption.py), mid-epoch
        frontend_values.csv    learned front-end scalars (log_learn's alpha, beta) at every step
        results.json           test metrics, written when a test run ends
        wandb/                 the W&B run (offline unless W&B is configured)

Nothing depends on timestamps, so a rerun of the same config finds its own state.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

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
    """Appends the front-end's learned scalars (e.g. alpha, beta) to a CSV after every optimizer step.

    Loggers are throttled by ``log_every_n_steps``; this file is not, so the report can
    plot the exact trajectory without network access.
    """

    filename = "frontend_values.csv"

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # (After the checkpoint is restored, so global_step is where training resumes.)
        # A resumed run repeats the steps after its checkpoint: drop the rows an interrupted
        # attempt wrote past that point, so every step appears once.
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
        values = pl_module.frontend.logged_values()
        if not values:
            return
        path = Path(trainer.default_root_dir) / self.filename
        new_file = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["step", *values])
            writer.writerow([trainer.global_step, *(f"{v:.6g}" for v in values.values())])


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
