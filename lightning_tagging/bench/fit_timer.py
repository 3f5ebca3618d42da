"""Timing a Lightning fit as training runs it: no host sync per step, data waiting measured at the DataLoader.

The timed window opens at the start hook of batch ``warmup`` and closes at the start hook of
batch ``warmup + steps`` (one untimed step more is trained, so the window holds exactly
``steps`` whole loop periods: each timed step and the fetch of the batch after it). The device
is synchronized only there, before each clock read, so the window's wall time is exact while
the steps inside it run as in training: the CPU queues each step's kernels and goes on to the
next batch without waiting for the device (unless the model itself syncs).

Data waiting is the time the loop spends blocked fetching the next training batch from the
DataLoader (Lightning's ``train_dataloader_next``, recorded by a profiler), summed over the
window. It is not the whole time between one batch's end hook and the next one's start hook:
that gap also holds whatever host syncs happen between batches (Lightning turns every value
logged with ``prog_bar=True`` into a number there; `TaggingModule` logs none per step, but
another module may), which wait for the device to finish the step. Moving the batch to the
device is not counted either: from pinned memory it is an asynchronous copy queued behind the
step's kernels. When the device is the bottleneck the workers have the next batch ready and
waiting stays near zero; when data loading is, it grows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.profilers import Profiler

from lightning_tagging.bench.timing import synchronize

FETCH_ACTION = "train_dataloader_next"  # Lightning's profiler action around next() on the training loader


@dataclass(frozen=True)
class FitTiming:
    """The timed window of a fit: ``steps`` optimizer steps in ``window_s`` seconds, ``data_wait_s`` of them
    spent blocked in ``fetches`` fetches from the training DataLoader (this process's; one per step, more
    across an epoch boundary)."""

    steps: int
    window_s: float
    data_wait_s: float
    fetches: int

    @property
    def ms_per_step(self) -> float:
        """Milliseconds of wall time per timed step."""
        return 1000 * self.window_s / self.steps

    @property
    def data_wait_fraction(self) -> float:
        """Share of the window spent blocked on the DataLoader, 0..1."""
        return self.data_wait_s / self.window_s

    def clips_per_s(self, clips_per_step: int) -> float:
        """Throughput when each step trains ``clips_per_step`` clips (batch × processes)."""
        return clips_per_step * self.steps / self.window_s


class _Window(Callback):
    """Synchronizes and reads the clock at the start hooks of batch ``warmup`` and ``warmup + steps``."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.batches_started = 0  # counted here: batch_idx restarts every epoch
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.batches_started in (self.warmup, self.warmup + self.steps):
            synchronize(pl_module.device)  # the queued steps belong on this side of the clock read
            now = time.perf_counter()
            if self.batches_started == self.warmup:
                self.start = now
            else:
                self.end = now
        self.batches_started += 1


class _Fetches(Profiler):
    """Records the (start, stop) perf_counter seconds of every fetch from the training DataLoader."""

    def __init__(self) -> None:
        super().__init__()
        self.intervals: list[tuple[float, float]] = []
        self._started: float | None = None

    def start(self, action_name: str) -> None:
        if action_name.endswith(FETCH_ACTION):
            self._started = time.perf_counter()

    def stop(self, action_name: str) -> None:
        if action_name.endswith(FETCH_ACTION) and self._started is not None:
            self.intervals.append((self._started, time.perf_counter()))
            self._started = None


class FitTimer:
    """Times ``steps`` optimizer steps after ``warmup`` untimed ones; give the Trainer ``max_steps``,
    ``callback`` and ``profiler``, then read :meth:`timing` after ``fit``."""

    def __init__(self, warmup: int, steps: int) -> None:
        if warmup < 1 or steps < 1:
            raise ValueError(f"FitTimer needs warmup ≥ 1 and steps ≥ 1, got {warmup} and {steps}")
        self.callback = _Window(warmup, steps)
        self.profiler = _Fetches()
        self.max_steps = warmup + steps + 1  # the last one only closes the window

    def timing(self) -> FitTiming:
        """The window's figures; raises RuntimeError if the fit stopped before the window closed."""
        start, end = self.callback.start, self.callback.end
        if start is None or end is None:
            raise RuntimeError(f"the fit ended after {self.callback.batches_started} of the "
                               f"{self.max_steps} batches the timed window needs")
        # Fetches run between hooks, so each one lies wholly inside the window or wholly outside.
        inside = [stop - begin for begin, stop in self.profiler.intervals if begin >= start and stop <= end]
        return FitTiming(steps=self.callback.steps, window_s=end - start, data_wait_s=sum(inside), fetches=len(inside))
