"""`lt bench fit`: end-to-end training throughput, shards → DataModule → model, and data waiting.

    lt bench fit --config experiments/demo.yaml --steps 20 [any lt fit override ...]
    lt bench fit --devices 4 --config experiments/mtt.yaml     # DDP on 4 GPUs of this node

Builds the model and data exactly as `lt fit --config ...` would, trains ``warmup + steps``
optimizer steps with Lightning (no logger, checkpoints or validation), and reports clips/s
over the timed steps and the fraction of step time spent waiting for the next batch
(time from one batch's end to the next batch's start: data loading plus loop overhead).

With ``--devices N`` (N > 1) Lightning starts N DDP processes (it reruns this command in
each); ``data.batch_size`` is per process, clips/s counts all of them, and the waiting share
and peak memory are rank zero's. Comparing N = 1 with N = k in one session gives the scaling.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from lightning_tagging.bench.timing import peak_memory_gib, reset_peak_memory, resolve_device, synchronize
from lightning_tagging.errors import UserError


class StepTimer(Callback):
    """Records, per training batch, the time waiting for it and the time computing it."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.computes: list[float] = []
        self._batch_start = 0.0
        self._last_end: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch_start = time.perf_counter()
        if self._last_end is not None:
            self.waits.append(self._batch_start - self._last_end)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        synchronize(pl_module.device)
        self._last_end = time.perf_counter()
        self.computes.append(self._last_end - self._batch_start)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (worker start-up, shuffle buffer)")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. 32-true, bf16-mixed")
    parser.add_argument("--devices", type=int, default=1, help="DDP processes (GPUs, or CPU processes without one)")
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace, cli_args: list[str]) -> int:
    """Run the benchmark; ``cli_args`` are `lt fit` arguments (--config and overrides)."""
    result = run(cli_args, steps=args.steps, warmup=args.warmup, precision=args.precision, devices=args.devices)
    if result["rank"] != 0:
        return 0  # one report per run: rank zero's
    print(format_result(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def run(cli_args: list[str], steps: int = 20, warmup: int = 3, precision: str = "32-true",
        devices: int = 1) -> dict[str, Any]:
    """Train ``warmup + steps`` optimizer steps of the model and data ``cli_args`` describe; the timed figures.

    ``cli_args`` are `lt fit` arguments (``--config`` and overrides). Returns clips/s (all
    ``devices`` together) and ms/step over the ``steps`` timed steps, the fraction of that time
    spent waiting for batches (``data_wait_fraction``, 0..1), peak allocated GiB (CUDA only,
    else None) and what was run (device, batch size per device, workers, precision, devices,
    this process's rank). ``devices`` > 1 runs DDP: Lightning reruns the command line in each
    extra process, so call this from a command (``lt bench fit``), never from a long-lived process.
    """
    from lightning_tagging.training_cli import TaggingCLI

    if warmup < 1 or steps < 1:
        raise UserError("lt bench fit needs --warmup ≥ 1 (the first batch waits for worker start-up) and --steps ≥ 1")

    cli = TaggingCLI(args=[*cli_args, "--trainer.logger", "false"], run=False)
    model, datamodule = cli.model, cli.datamodule
    timer = StepTimer()
    trainer = pl.Trainer(max_steps=warmup + steps, max_epochs=-1, logger=False,
                         enable_checkpointing=False, limit_val_batches=0, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], precision=precision,
                         devices=devices, strategy="ddp" if devices > 1 else "auto", num_sanity_val_steps=0)
    device = resolve_device("auto")  # where Lightning's accelerator=auto will train
    reset_peak_memory(device)
    trainer.fit(model, datamodule=datamodule)
    # Timed: batches warmup .. warmup+steps-1; waits[i] is the wait before batch i + 1.
    computes = timer.computes[warmup:]
    waits = timer.waits[warmup - 1:]
    total = sum(waits) + sum(computes)
    batch = datamodule.batch_size
    return {
        "device": str(model.device),
        "devices": trainer.world_size,
        "rank": trainer.global_rank,
        "batch_size": batch,
        "num_workers": datamodule.num_workers,
        "precision": precision,
        "steps_timed": len(computes),
        "train_clips_per_s": batch * trainer.world_size * len(computes) / total,
        "ms_per_step": 1000 * total / len(computes),
        "data_wait_fraction": sum(waits) / total,
        "peak_memory_gib": peak_memory_gib(device),
    }


def format_result(result: dict[str, Any]) -> str:
    """One line for a :func:`run` result."""
    return (f"lt bench fit: {result['train_clips_per_s']:.1f} clips/s, {result['ms_per_step']:.0f} ms/step, "
            f"waiting for data {100 * result['data_wait_fraction']:.1f} % of the time "
            f"(batch {result['batch_size']}, {result['num_workers']} workers, {result['precision']}, "
            f"{result['device']}{'' if result['devices'] == 1 else ' × ' + str(result['devices'])})")
