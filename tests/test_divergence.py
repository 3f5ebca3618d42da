"""A loss that becomes NaN stops the run with a clear error: no quiet results from an older checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from test_trajectory import tiny_fit

from lightning_tagging.cli import main
from lightning_tagging.divergence import DivergenceCheck, TrainingDiverged

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "experiments" / "demo.yaml")


class PoisonWeightsAt(pl.Callback):
    """Sets one weight to NaN before training step ``step`` (1-based), as an exploding update would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step + 1 == self.step:
            with torch.no_grad():
                next(pl_module.backbone.parameters()).view(-1)[0] = float("nan")


def fit(corpus: Path, root: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    """One epoch of 6 steps of a tiny VGG (`tiny_fit`), no validation."""
    return tiny_fit(corpus, root, callbacks, epochs=1, batches=6)


def test_a_nan_loss_stops_training_at_the_next_check_naming_its_first_step(tiny_corpus: Path, tmp_path: Path) -> None:
    check = DivergenceCheck(every_n_steps=2)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at 2 training step\(s\) of epoch 0, first at step 3"):
        fit(tiny_corpus, tmp_path, [PoisonWeightsAt(3), check])


def test_the_epoch_end_check_catches_what_the_periodic_one_has_not_reached(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"first at step 6"):
        fit(tiny_corpus, tmp_path, [PoisonWeightsAt(6), DivergenceCheck(every_n_steps=100)])


def test_finite_training_is_not_stopped(tiny_corpus: Path, tmp_path: Path) -> None:
    trainer = fit(tiny_corpus, tmp_path, [DivergenceCheck(every_n_steps=1)])
    assert trainer.global_step == 6


def test_lt_run_reports_divergence_in_one_line_and_writes_no_results(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    code = main(["run", "--config", DEMO_CONFIG, "--data.root", str(tiny_corpus), "--data.batch_size", "2",
                 "--data.num_workers", "0", "--data.shuffle_buffer", "8", "--model.backbone.init_args.width", "0.1",
                 "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.logger", "false",
                 "--trainer.callbacks+=test_divergence.PoisonWeightsAt", "--trainer.callbacks.step", "2",
                 "--trainer.default_root_dir", str(run_dir)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "first at step 2" in err[0], err
    assert not (run_dir / "results.json").exists()
