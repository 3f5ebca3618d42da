"""frontend_values.csv: one row per step, written in blocks, never short of a checkpoint; and a step reads nothing back.

`FrontendTrajectory` keeps each step's values on the device and writes them in blocks, so that
training does not wait for the device every step. These fits check the file against a
step-by-step reference, that every checkpoint finds its steps on disk (a preempted run resumes
from one), that a failure keeps its steps, and that a fit with `lt`'s callbacks and bar reads
values back from the device only at those writes, not after every step.
"""

from __future__ import annotations

import csv
import functools
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from lightning_tagging.callbacks import FrontendTrajectory, StepSeed
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.divergence import DivergenceCheck
from lightning_tagging.frontends import LogMel
from lightning_tagging.models import VGG
from lightning_tagging.module import TaggingModule
from lightning_tagging.preemption import PREEMPTED_CHECKPOINT, Preempted, RequeueOnSignal
from lightning_tagging.progress import ThrottledProgressBar

NEVER = {"flush_every_n_steps": 10**6, "flush_every_s": 3600.0}  # only the writes every run must make


def tiny_fit(corpus: Path, root: Path, callbacks: list[pl.Callback], epochs: int = 2, batches: int = 5,
             ckpt_path: Path | None = None, optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
             enable_progress_bar: bool = False) -> pl.Trainer:
    """``epochs`` × ``batches`` steps of a tiny VGG on log_learn (about 0.05 s a step on a CPU), no validation."""
    pl.seed_everything(0)
    data = TaggingDataModule(str(corpus), batch_size=2, num_workers=0, shuffle_buffer=8)
    model = TaggingModule(LogMel("log_learn"), VGG(n_tags=data.n_tags, filters=8), tags=data.vocab,
                          optimizer=optimizer)
    trainer = pl.Trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=root,
                         callbacks=callbacks, enable_progress_bar=enable_progress_bar)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer


def csv_steps(path: Path) -> list[int]:
    """The step column of a trajectory file ([] when there is none yet)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


class Reference(pl.Callback):
    """After each step: the row the file must get (read at once, as the unbuffered callback did) and the
    steps already in the file. Listed after `FrontendTrajectory`, so it sees the file after its write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[list[str]] = []
        self.on_disk: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        values = pl_module.frontend.logged_values()
        self.rows.append([str(trainer.global_step), *(f"{float(v):.6g}" for v in values.values())])
        self.on_disk.append(len(csv_steps(self.path)))


@pytest.mark.parametrize(
    ("flush", "on_disk"),
    [
        (NEVER, [0, 0, 0, 0, 0, 5, 5, 5, 5, 5]),  # epoch ends only
        ({"flush_every_n_steps": 2, "flush_every_s": 3600.0}, [0, 2, 2, 4, 4, 5, 7, 7, 9, 9]),  # + blocks of 2
        ({"flush_every_n_steps": 10**6, "flush_every_s": 0.0}, list(range(1, 11))),  # the clock: every step
    ],
    ids=["epoch-ends", "every-2-steps", "every-0-s"],
)
def test_the_file_has_each_step_once_as_read_step_by_step(
    flush: dict[str, Any], on_disk: list[int], tiny_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / FrontendTrajectory.filename
    reference = Reference(path)
    tiny_fit(tiny_corpus, tmp_path, [FrontendTrajectory(**flush), reference])
    assert reference.on_disk == on_disk  # written in the blocks asked for
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "alpha", "beta"]
    assert rows[1:] == reference.rows  # and the same text the step-by-step writer wrote
    assert [int(row[0]) for row in rows[1:]] == list(range(1, 11))


class SaveAt(pl.Callback):
    """Saves a checkpoint after ``step`` and notes which steps the file holds right then.

    Listed before `FrontendTrajectory`: the checkpoint comes before that callback has seen the step."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        self.step, self.checkpoint = step, checkpoint
        self.steps_at_save: list[int] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.checkpoint)
            self.steps_at_save = csv_steps(Path(trainer.default_root_dir) / FrontendTrajectory.filename)


def test_every_checkpoint_finds_its_steps_on_disk(tiny_corpus: Path, tmp_path: Path) -> None:
    save = SaveAt(3, tmp_path / "mid.ckpt")
    tiny_fit(tiny_corpus, tmp_path, [save, FrontendTrajectory(**NEVER)])
    assert save.steps_at_save == [1, 2, 3]  # mid-epoch: no other write was due
    assert csv_steps(tmp_path / FrontendTrajectory.filename) == list(range(1, 11))  # step 3 once, not twice


class SignalAt(pl.Callback):
    """Sends this process SIGUSR1 after ``step``, as `scancel --signal=USR1` would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_a_preempted_and_resumed_run_writes_the_uninterrupted_file(tiny_corpus: Path, tmp_path: Path) -> None:
    def fit(root: Path, *callbacks: pl.Callback, ckpt_path: Path | None = None) -> pl.Trainer:
        return tiny_fit(tiny_corpus, root, [StepSeed(), FrontendTrajectory(**NEVER), *callbacks, RequeueOnSignal()],
                        ckpt_path=ckpt_path)

    fit(tmp_path / "straight")
    run = tmp_path / "preempted"
    with pytest.raises(Preempted) as stop:
        fit(run, SignalAt(7))  # in epoch 2: steps 6 and 7 are held when the checkpoint is taken
    assert stop.value.step == 7
    assert csv_steps(run / FrontendTrajectory.filename) == list(range(1, 8))
    fit(run, ckpt_path=run / "checkpoints" / PREEMPTED_CHECKPOINT)
    text = (run / FrontendTrajectory.filename).read_text()
    assert text == (tmp_path / "straight" / FrontendTrajectory.filename).read_text()
    assert csv_steps(run / FrontendTrajectory.filename) == list(range(1, 11))


class FailAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("a failing step")


def test_a_failed_run_keeps_the_steps_it_took(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="a failing step"):
        tiny_fit(tiny_corpus, tmp_path, [FrontendTrajectory(**NEVER), FailAt(4)])
    assert csv_steps(tmp_path / FrontendTrajectory.filename) == [1, 2, 3, 4]


READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


class HostReads(pl.Callback):
    """Notes each read of a tensor's values on the host (a host sync on a GPU) from a batch's start to the
    epoch's end: every step and what runs between steps, not the epoch-end work. Listed first, so its
    hooks run before the others'."""

    def __init__(self) -> None:
        self.counting = False
        self.reads: list[str] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.counting = True

    def on_train_epoch_end(self, *args: Any) -> None:
        self.counting = False


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> HostReads:
    counter = HostReads()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            if counter.counting:
                caller = traceback.extract_stack(limit=2)[0]
                counter.reads.append(f"{_name} in {Path(caller.filename).name}:{caller.lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counter


def test_a_training_step_reads_nothing_back_from_the_device(
    host_reads: HostReads, tiny_corpus: Path, tmp_path: Path
) -> None:
    # lt's per-step callbacks and bar, with writes, checks and bar reads spaced beyond this fit's length; SGD,
    # because Adam reads its step counters with .item() (CPU tensors by design, also on a GPU: no sync).
    callbacks = [host_reads, StepSeed(), FrontendTrajectory(**NEVER), RequeueOnSignal(),
                 DivergenceCheck(every_n_steps=100), ThrottledProgressBar(metrics_interval_s=3600.0)]
    tiny_fit(tiny_corpus, tmp_path, callbacks, epochs=1, batches=30,
             optimizer=functools.partial(torch.optim.SGD, lr=0.01), enable_progress_bar=True)
    # Only the bar's first read (train/loss_step, frontend/alpha, frontend/beta); one per step would be 30.
    assert len(host_reads.reads) <= 3, host_reads.reads
    assert {read.split(":")[0] for read in host_reads.reads} <= {"item in progress.py"}, host_reads.reads
    assert csv_steps(tmp_path / FrontendTrajectory.filename) == list(range(1, 31))
