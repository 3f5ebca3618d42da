"""The training progress bar of `lt`: advances every batch, reads metrics at most once a second.

Reading a metric that lives on the GPU as a Python number makes the host wait for the GPU (a
host sync), which stops it from queueing the next steps ahead. Lightning's own bar reads
``trainer.progress_bar_metrics`` after every batch, and Lightning converts every value logged
with ``prog_bar=True`` to a number after every batch whether a bar is shown or not. So
`TaggingModule` logs its per-step values (``train/loss``, ``frontend/*``) without ``prog_bar``,
and this bar shows them itself: it moves its counter every batch (no tensor read) and rereads
the metrics every ``metrics_interval_s`` seconds, and at the ends of epochs and validations.
A 1 step/s laptop run looks as before; a 30 steps/s GPU run syncs about once a second.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar


class ThrottledProgressBar(TQDMProgressBar):
    """`TQDMProgressBar` whose training postfix (the metrics) is refreshed at most every ``metrics_interval_s``.

    Args:
        metrics_interval_s: least time between two reads of the metrics during a training epoch,
            in seconds (0: every batch, like Lightning's bar). Epoch and validation ends always read them.
        step_metrics: name prefixes of the logged values shown besides Lightning's progress-bar
            metrics (``v_num``, ``val/*``): those logged without ``prog_bar`` to spare a sync per step.
        refresh_rate, process_position, leave: as `TQDMProgressBar`'s.
    """

    def __init__(
        self,
        metrics_interval_s: float = 1.0,
        step_metrics: tuple[str, ...] = ("train/", "frontend/"),
        refresh_rate: int = 1,
        process_position: int = 0,
        leave: bool = False,
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.metrics_interval_s = metrics_interval_s
        self.step_metrics = tuple(step_metrics)
        self._metrics_read_at = -math.inf  # time.monotonic() of the last read

    def on_train_start(self, *args: Any) -> None:
        super().on_train_start(*args)
        self._metrics_read_at = -math.inf  # the first batch shows its values at once

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self._train_progress_bar
        n = batch_idx + 1
        if bar is None or bar.disable or not self._should_update(n, bar.total):
            return
        now = time.monotonic()
        if now - self._metrics_read_at >= self.metrics_interval_s:
            self._metrics_read_at = now
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.n = n
        bar.refresh()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Lightning's progress-bar metrics plus the logged values named by ``step_metrics``, as numbers.

        A value logged both per step and per epoch appears as ``<name>_step`` and ``<name>_epoch``
        (as on Lightning's bar), not a third time under its bare name.
        """
        metrics = super().get_metrics(trainer, pl_module)
        logged = {name: value for name, value in trainer.callback_metrics.items() if name.startswith(self.step_metrics)}
        for name, value in logged.items():
            if f"{name}_step" in logged or f"{name}_epoch" in logged:
                continue
            metrics[name] = value.item() if isinstance(value, torch.Tensor) else value
        return metrics
