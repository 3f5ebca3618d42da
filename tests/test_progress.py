"""`lt`'s progress bar: its counter moves every batch, its metrics are read once per interval and at epoch ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from test_trajectory import tiny_fit

from lightning_tagging.progress import ThrottledProgressBar
from lightning_tagging.training_cli import TaggingCLI

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "experiments" / "demo.yaml")


class CountingBar(ThrottledProgressBar):
    """The bar itself, counting its metric reads (each one reads every shown value back from the device)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0
        self.counts: list[int] = []  # the counter after each batch

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        self.reads += 1
        return super().get_metrics(trainer, pl_module)

    def on_train_batch_end(self, *args: Any) -> None:
        super().on_train_batch_end(*args)
        self.counts.append(self.train_progress_bar.n)


def test_metrics_are_read_once_per_interval_and_at_each_epoch_end(tiny_corpus: Path, tmp_path: Path) -> None:
    bar = CountingBar(metrics_interval_s=3600.0)
    tiny_fit(tiny_corpus, tmp_path, [bar], epochs=2, batches=15, enable_progress_bar=True)
    assert bar.reads == 1 + 2  # the first batch, then the two epoch ends; not 30 steps
    assert bar.counts == list(range(1, 16)) * 2  # the counter itself moves every batch
    postfix = bar.train_progress_bar.postfix
    for name in ("train/loss_step=", "train/loss_epoch=", "frontend/alpha=", "frontend/beta="):
        assert name in postfix, postfix


def test_an_interval_of_zero_reads_after_every_batch(tiny_corpus: Path, tmp_path: Path) -> None:
    bar = CountingBar(metrics_interval_s=0.0)
    tiny_fit(tiny_corpus, tmp_path, [bar], epochs=1, batches=6, enable_progress_bar=True)
    assert bar.reads == 6 + 1  # as Lightning's own bar does


def cli_trainer(corpus: Path, tmp_path: Path, *args: str) -> pl.Trainer:
    """The Trainer `lt fit --config demo.yaml <args>` builds (nothing is run)."""
    cli = TaggingCLI(args=["--config", DEMO, "--data.root", str(corpus), "--trainer.logger", "false",
                           "--trainer.default_root_dir", str(tmp_path), *args], run=False)
    return cli.trainer


@pytest.mark.parametrize(
    ("args", "bar_class"),
    [
        ([], ThrottledProgressBar),
        (["--trainer.enable_progress_bar", "false"], None),  # Lightning refuses a bar it is told not to show
        (["--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=5"], TQDMProgressBar),
    ],
    ids=["default", "disabled", "the-users-own"],
)
def test_lt_adds_its_bar_unless_the_config_disables_it_or_brings_one(
    args: list[str], bar_class: type | None, tiny_corpus: Path, tmp_path: Path
) -> None:
    trainer = cli_trainer(tiny_corpus, tmp_path, *args)
    bar = trainer.progress_bar_callback
    assert (type(bar) if bar is not None else None) is bar_class
    if bar_class is TQDMProgressBar:
        assert bar.refresh_rate == 5  # the config's own instance
