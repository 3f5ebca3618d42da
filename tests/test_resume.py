"""A run stopped mid-epoch and resumed is the run that never stopped: same weights, same counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from test_wandb import signal_when, tiny_data, tiny_matrix

from lightning_tagging.callbacks import StepSeed
from lightning_tagging.cli import main
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.data.shards import TarShardWriter, list_shards, read_samples
from lightning_tagging.frontends import LogMel
from lightning_tagging.matrix.spec import load_matrix
from lightning_tagging.models import Musicnn
from lightning_tagging.module import TaggingModule


class StopAfter(pl.Callback):
    """Checkpoint after optimizer step ``step`` (mid-epoch) and stop, as a preempted job would."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True  # fit() returns after this batch


def fit_in_python(corpus: Path, root: Path, callbacks: list[pl.Callback],
                  ckpt_path: Path | None = None) -> TaggingModule:
    """Plain Lightning, no `lt` CLI: 2 epochs of 3 batches of a tiny musicnn (with StepSeed, as `lt` adds it,
    so that dropout draws depend on the step only)."""
    pl.seed_everything(0)
    data = TaggingDataModule(str(corpus), batch_size=2, num_workers=0, shuffle_buffer=8)
    model = TaggingModule(LogMel(), Musicnn(n_tags=data.n_tags, width=0.1), tags=data.vocab)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=root,
                         callbacks=[StepSeed(), *callbacks])
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model


def test_plain_lightning_resumes_mid_epoch_on_the_same_batches(tiny_corpus: Path, tmp_path: Path) -> None:
    """The DataModule's loader itself is resumable: a user's own script gets it without `lt`."""
    straight = fit_in_python(tiny_corpus, tmp_path / "straight", [])
    checkpoint = tmp_path / "stopped.ckpt"
    fit_in_python(tiny_corpus, tmp_path / "stopped", [StopAfter(4, checkpoint)])  # epoch 2, after its 1st batch
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 4
    resumed = fit_in_python(tiny_corpus, tmp_path / "resumed", [], ckpt_path=checkpoint)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


def with_corrupt_training_samples(root: Path, out: Path) -> Path:
    """A copy of ``root`` whose training shards each start with a sample that does not decode."""
    copy = Path(shutil.copytree(root, out))
    for shard in list_shards(copy, "train"):
        samples = list(read_samples(shard))
        payload = next(name for name in samples[0] if name not in ("__key__", "json"))
        samples[0][payload] = b"not audio at all"
        writer = TarShardWriter(shard)
        for sample in samples:
            writer.add(sample["__key__"], payload, sample[payload], sample["json"])
        writer.commit()
    return copy


def test_train_skipped_survives_preemption(tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    corpus = with_corrupt_training_samples(tiny_corpus, tmp_path / "corpus")
    path = tiny_matrix(tmp_path, epochs=2, batches=3)
    cell = load_matrix(path).cells()[0]

    def run(runs: Path) -> int:
        return main(["matrix", "run", str(path), "--cell", "0", "--runs", str(runs), "--", *tiny_data(corpus)])

    assert run(tmp_path / "straight") == 0
    straight = json.loads((tmp_path / "straight" / "wb" / cell.id / "results.json").read_text())

    run_dir = tmp_path / "preempted" / "wb" / cell.id
    # The file is written in blocks, at the latest at an epoch's end: 3 rows = epoch 1 done, so the signal
    # lands in epoch 2 (3 batches), after its first or second batch.
    watcher = signal_when(run_dir / "frontend_values.csv", rows=3)
    assert run(tmp_path / "preempted") == 3  # checkpointed mid-epoch and stopped
    watcher.join()
    assert run(tmp_path / "preempted") == 0  # resumed and finished
    resumed = json.loads((run_dir / "results.json").read_text())

    assert straight["train_skipped"] > 0  # every shard opened starts with a corrupt sample
    assert resumed["train_skipped"] == straight["train_skipped"]
    assert resumed["roc_auc"] == pytest.approx(straight["roc_auc"], abs=1e-6)  # the same run, resumed
