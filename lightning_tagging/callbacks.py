"""Callbacks that give every run the same directory layout.

    <run dir>/                 = trainer.default_root_dir, e.g. runs/demo
        config.yaml            the fully resolved config (LightningCLI)
        checkpoints/best.ckpt  best validation PR-AUC
        checkpoints/last.ckpt  latest state, for resuming
        frontend_values.csv    learned front-end scalars (log_learn's alpha, beta) at every step
        results.json           test metrics, written when a test run ends
        wandb/                 the W&B run (offline unless W&B is configured)

Nothing depends on timestamps, so a rerun of the same config finds its own state.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only


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


class FrontendTrajectory(Callback):
    """Appends the front-end's learned scalars (e.g. alpha, beta) to a CSV after every optimizer step.

    Loggers are throttled by ``log_every_n_steps``; this file is not, so the report can
    plot the exact trajectory without network access.
    """

    filename = "frontend_values.csv"

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


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
