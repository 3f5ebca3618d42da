"""`lt bench fit`: end-to-end training throughput, shards → DataModule → model, and data waiting.

    lt bench fit --config experiments/demo.yaml --steps 20 [any lt fit override ...]
    lt bench fit --devices 4 --config experiments/mtt.yaml     # DDP on 4 GPUs of this node
    lt bench fit --config experiments/mtt.yaml --model.compile true --precision bf16-mixed

Builds the model and data exactly as `lt fit --config ...` would and trains ``warmup + steps + 1``
optimizer steps with Lightning (no logger, checkpoints or validation). The ``steps`` timed ones
run as in training, without a host sync per step: the device is synchronized only when the timed
window opens and closes (``fit_timer.py``). Reports clips/s and ms/step over that window, and the
share of it the loop spent blocked fetching the next batch from the DataLoader: near zero when
the device is the bottleneck, growing when data loading is.

With ``--devices N`` (N > 1) Lightning starts N DDP processes (it reruns this command in
each); ``data.batch_size`` is per process, clips/s counts all of them, and the window, the waiting
share and peak memory are rank zero's. Comparing N = 1 with N = k in one session gives the scaling.
With ``--model.compile true`` the first warm-up step compiles, outside the timed window.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_tagging.bench.fit_timer import FitTimer
from lightning_tagging.bench.timing import peak_memory_gib, reset_peak_memory, resolve_device
from lightning_tagging.errors import UserError


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
    """Train ``warmup + steps + 1`` optimizer steps of the model and data ``cli_args`` describe; the timed figures.

    ``cli_args`` are `lt fit` arguments (``--config`` and overrides). The ``steps`` timed steps
    run without a host sync per step (:class:`~lightning_tagging.bench.fit_timer.FitTimer`).
    Returns, over their window: clips/s (all ``devices`` together), ms/step (window / steps),
    ``timed_s`` (the window, seconds), ``data_wait_s`` (seconds of it blocked fetching batches from
    the DataLoader) and ``data_wait_fraction`` (their ratio, 0..1); peak allocated GiB (CUDA only,
    else None), whether every weight is still finite after training, and what was run (device,
    batch size per device, workers, precision, compiled or not, devices, this process's rank).
    ``devices`` > 1 runs DDP: Lightning reruns the command line in each extra process, so call
    this from a command (``lt bench fit``), never from a long-lived process.
    """
    from lightning_tagging.training_cli import TaggingCLI

    if warmup < 1 or steps < 1:
        raise UserError("lt bench fit needs --warmup ≥ 1 (the first batch waits for worker start-up) and --steps ≥ 1")

    cli = TaggingCLI(args=[*cli_args, "--trainer.logger", "false"], run=False)
    model, datamodule = cli.model, cli.datamodule
    timer = FitTimer(warmup=warmup, steps=steps)
    trainer = pl.Trainer(max_steps=timer.max_steps, max_epochs=-1, logger=False,
                         enable_checkpointing=False, limit_val_batches=0, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer.callback], profiler=timer.profiler,
                         precision=precision, devices=devices, strategy="ddp" if devices > 1 else "auto",
                         num_sanity_val_steps=0)
    device = resolve_device("auto")  # where Lightning's accelerator=auto will train
    reset_peak_memory(device)
    trainer.fit(model, datamodule=datamodule)
    timing = timer.timing()
    # A speed figure of a model that trained into NaN would be worthless (one host sync, after the window).
    weights_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    batch = datamodule.batch_size
    return {
        "device": str(trainer.strategy.root_device),  # (not model.device: Lightning moves the model back to the CPU)
        "devices": trainer.world_size,
        "rank": trainer.global_rank,
        "batch_size": batch,
        "num_workers": datamodule.num_workers,
        "precision": precision,
        "steps_timed": timing.steps,
        "timed_s": timing.window_s,
        "train_clips_per_s": timing.clips_per_s(batch * trainer.world_size),
        "ms_per_step": timing.ms_per_step,
        "data_wait_s": timing.data_wait_s,
        "data_wait_fraction": timing.data_wait_fraction,
        "peak_memory_gib": peak_memory_gib(device),
        "weights_finite": weights_finite,
        "compile": model.compile_mode is not None,
        "compile_mode": model.compile_mode,  # None: eager
    }


def format_result(result: dict[str, Any]) -> str:
    """One line for a :func:`run` result."""
    warning = "" if result.get("weights_finite", True) else "; WEIGHTS NOT FINITE: training diverged"
    mode = result.get("compile_mode")
    compiled = "" if not result.get("compile") else ", compiled" + ("" if mode in (None, "default") else f" ({mode})")
    peak = result.get("peak_memory_gib")
    return (f"lt bench fit: {result['train_clips_per_s']:.1f} clips/s, {result['ms_per_step']:.0f} ms/step, "
            f"waiting for data {100 * result['data_wait_fraction']:.1f} % of the time"
            f"{'' if peak is None else f', peak {peak:.2f} GiB'} "
            f"(batch {result['batch_size']}, {result['num_workers']} workers, {result['precision']}{compiled}, "
            f"{result['device']}{'' if result['devices'] == 1 else ' × ' + str(result['devices'])}){warning}")
