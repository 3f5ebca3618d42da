"""Preemption: on SIGUSR1, checkpoint at the next step boundary, stop; then requeue the SLURM job.

Array tasks ask for ``--signal=SIGUSR1@90`` (see ``slurm/array.sbatch``): 90 s before the time
limit, or when an administrator or `scancel --signal=USR1` asks, every task of the job step
gets SIGUSR1. This is what Lightning's ``SLURMEnvironment(auto_requeue=True)`` listens for,
with one change: Lightning saves its checkpoint inside the signal handler, i.e. wherever the
interpreter happens to be (between a backward pass and its optimizer step, say), and each DDP
rank at its own point. Here the handler only raises a flag; the checkpoint is written after a
whole training step, at the same step on every rank (the ranks agree with one boolean
all-reduce per step), and never at an epoch's last batch (the epoch's validation, which picks
``best.ckpt``, must run first, so the save waits one step). Training then stops with
`Preempted`; its catcher (`lt run`, the matrix cell runner) records the state and calls
`Preempted.requeue`: rank zero asks Slurm to requeue the task (`scontrol requeue <job>`).

The requeued task runs the same command in the same run dir; `lt run` resumes from the newest
checkpoint (``resume.py``) and, with `StepSeed` and the resumable training loader, takes the
same steps an uninterrupted run takes. Outside Slurm, SIGUSR1 checkpoints and stops: run the
same command again to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

PREEMPTED_CHECKPOINT = "preempted.ckpt"


class Preempted(Exception):
    """Training stopped on a preemption signal after saving ``checkpoint``.

    Whoever catches it records what it needs, then calls `requeue` (last: Slurm ends the job
    soon after).

    Attributes:
        checkpoint: where the state was saved.
        step: the global step it holds.
        rank_zero: whether this process is the one that requeues.
        requeued: the Slurm job that was requeued ("123_4") once `requeue` ran, else None.
    """

    def __init__(self, checkpoint: str, step: int, rank_zero: bool = True) -> None:
        self.checkpoint, self.step, self.rank_zero = checkpoint, step, rank_zero
        self.requeued: str | None = None
        super().__init__(f"preempted at step {step}: saved {checkpoint}")

    def requeue(self) -> str | None:
        """Under Slurm, on rank zero: put the job back in the queue. Returns the job id, or None."""
        job = slurm_job_id()
        if self.rank_zero and job is not None:
            requeue(job)
            self.requeued = job
        return self.requeued

    def __str__(self) -> str:
        where = f"requeued Slurm job {self.requeued}" if self.requeued else "run the same command again to resume"
        return f"{super().__str__()}; {where}"


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` wants: ``<array job>_<task>`` for an array task, else the job id."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue(job_id: str) -> None:
    """Ask Slurm to put the job back in the queue; it restarts the batch script from the top."""
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"scontrol requeue {job_id} failed: {result.stderr.strip() or result.returncode}")


class RequeueOnSignal(Callback):
    """Checkpoint and requeue on ``signum`` (SIGUSR1), at the next safe step boundary (see the module docstring)."""

    def __init__(self, signum: int = signal.SIGUSR1) -> None:
        self.signum = signum
        self.requested = False
        self._previous: Any = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True  # everything else happens at the next step boundary

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Installed before the Trainer registers its handlers, so Lightning sees one already there
        # and does not add its own in-handler checkpoint; its SIGTERM handling stays as it is.
        if stage == "fit" and self._previous is None:
            self.requested = False
            self._previous = signal.signal(self.signum, self._on_signal)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        requested = self.requested
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested or batch_idx + 1 >= trainer.num_training_batches:
            return
        path = Path(trainer.default_root_dir) / "checkpoints" / PREEMPTED_CHECKPOINT
        tmp = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(tmp)  # every rank takes part; rank zero writes
        if trainer.is_global_zero:
            os.replace(tmp, path)  # a kill during the write never leaves a half checkpoint behind
        raise Preempted(str(path), trainer.global_step, trainer.is_global_zero)
