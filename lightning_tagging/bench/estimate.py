"""`lt bench estimate`: a training step's arithmetic and peak memory, worked out without running it.

    lt bench estimate --backbone musicnn samplecnn --batch 16 256 --precision fp32 bf16-mixed
    lt bench estimate --backbone musicnn --batch 256 --backbone-args '{"conv_impl": "fused"}'

Training steps run on fake tensors (torch's ``FakeTensorMode``): shapes, dtypes and the flow
of storages are real, values are never computed and nothing is allocated, so a laptop can
say within seconds whether musicnn at batch 256 fits in 8 GiB of a GPU it does not have.
Each step is what Lightning runs (forward, loss, ``zero_grad(set_to_none=True)``, backward,
Adam), twice, so that the second step meets the first step's gradients and Adam's state.

- FLOPs (``torch.utils.flop_counter.FlopCounterMode``): convolutions and matrix products,
  two per multiply-add, of the first step's forward and backward. Elementwise ops,
  BatchNorm and the FFT are not counted; in musicnn and sampleCNN they are a few percent.
  The issue's figures for the two models, 8.4 and 10.4 GFLOP per training clip, are these.
- Peak memory (``torch.distributed._tools.mem_tracker.MemTracker``): every tensor storage
  from allocation to release, summed over time; the largest sum, and what it held by kind
  (parameters, buffers, gradients, optimizer state, activations, temporaries). It counts
  tensors only: a GPU adds its CUDA context, library workspaces and the caching
  allocator's rounding, so ``torch.cuda.max_memory_allocated`` (``lt bench model``'s peak)
  comes out somewhat higher.

bf16-mixed runs under the CPU's autocast, whose casts match CUDA's for convolutions and
matrix products. compile and channels_last are not modelled: the eager module is estimated
(musicnn's ``fused_compiled`` as ``fused``; its fused kernels hold fewer temporaries).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker
from torch.utils.flop_counter import FlopCounterMode

from lightning_tagging.bench.configs import (
    ModelConfig,
    add_config_arguments,
    build_backbone,
    build_frontend,
    configs_from,
)
from lightning_tagging.models import fused_branch
from lightning_tagging.module import TaggingModule

GIB = 2**30
# MemTracker's names for what a storage holds → ours (its "Total" is the sum).
MEMORY_KINDS = {"Parameter": "parameters", "Buffer": "buffers", "Gradient": "gradients",
                "Optstate": "optimizer state", "Activation": "activations", "Temp": "temporaries"}


@dataclass
class TrainingEstimate:
    """What one training step of ``config`` costs, from fake tensors.

    ``train_gflop_per_clip``: convolution and matrix-product GFLOP of one clip's forward and
    backward (what this implementation executes: a recomputing one counts its recompute).
    ``peak_gib``: the most tensor memory alive at once over two steps, GiB, and
    ``peak_by_kind_gib`` what it held at that moment.
    """

    config: ModelConfig
    train_gflop_per_clip: float
    peak_gib: float
    peak_by_kind_gib: dict[str, float] = field(default_factory=dict)


def estimate(config: ModelConfig, n_tags: int = 50) -> TrainingEstimate:
    """FLOPs and peak memory of training ``config`` (two Adam steps on fake tensors)."""
    flops = FlopCounterMode(display=False)
    memory = MemTracker()
    _fake_training(config, n_tags, steps=2, flop_counter=flops, memory_tracker=memory)
    peak = next(iter(memory.get_tracker_snapshot("peak").values()), {})  # one device: the fake CPU
    return TrainingEstimate(
        config=config,
        train_gflop_per_clip=flops.get_total_flops() / config.batch / 1e9,
        peak_gib=peak.get("Total", 0) / GIB,
        peak_by_kind_gib={ours: peak.get(theirs, 0) / GIB for theirs, ours in MEMORY_KINDS.items()},
    )


def model_gflop_per_clip(config: ModelConfig) -> float:
    """GFLOP of one training clip of ``config``'s plain model: the model's arithmetic, recompute not counted.

    The same for every batch, precision and implementation of a model, so ``lt bench model``
    counts it once per model and divides it by its step time (model TFLOP/s, as MFU counts it).
    """
    return _plain_gflop_per_clip(replace(config.baseline, batch=2))  # 2: BatchNorm needs more than one


@functools.lru_cache(maxsize=64)
def _plain_gflop_per_clip(plain: ModelConfig) -> float:
    flops = FlopCounterMode(display=False)
    _fake_training(plain, n_tags=50, steps=1, flop_counter=flops, memory_tracker=None)
    return flops.get_total_flops() / plain.batch / 1e9


def _fake_training(
    config: ModelConfig, n_tags: int, steps: int, flop_counter: FlopCounterMode, memory_tracker: MemTracker | None
) -> None:
    """``steps`` training steps of ``config`` on fake tensors; the first step's FLOPs go to ``flop_counter``."""
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        backbone = build_backbone(config, n_tags)  # fake weights: no memory, any size
    frontend = build_frontend(config)  # real: its mel filters and window are computed from values
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if config.precision == "bf16-mixed"
                else contextlib.nullcontext())
    # The fused branch checks now and then that its recomputed conv matches, by reading values.
    with fused_branch.recompute_checks_paused(), fake:
        module = TaggingModule(frontend, backbone).train()
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        tracking: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if memory_tracker is not None:
            memory_tracker.track_external(module, optimizer)
            tracking = memory_tracker
        with tracking:
            for step in range(steps):
                if step and memory_tracker is not None:
                    memory_tracker.reset_mod_stats()  # its per-module records allow one forward each
                audio = torch.randn(config.batch, module.train_crop_samples)
                targets = torch.zeros(config.batch, n_tags)
                with flop_counter if step == 0 else contextlib.nullcontext():
                    with autocast:
                        logits = module(audio)
                    loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
                    optimizer.zero_grad(set_to_none=True)  # where Lightning's closure does it
                    loss.backward()
                optimizer.step()


def format_row(result: TrainingEstimate) -> str:
    kinds = ", ".join(f"{kind} {gib:.2f}" for kind, gib in result.peak_by_kind_gib.items() if gib >= 0.005)
    return (f"{result.config.label:<42} {result.train_gflop_per_clip:7.2f} GFLOP/clip  "
            f"peak {result.peak_gib:7.2f} GiB  ({kinds})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, batches=[16, 256])
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")


def main(args: argparse.Namespace) -> int:
    configs = configs_from(args)
    print(f"lt bench estimate: fake tensors, nothing runs; torch {torch.__version__}", flush=True)
    results = []
    for config in configs:
        results.append(estimate(config))
        print(format_row(results[-1]), flush=True)
    if args.json:
        print(json.dumps([{**asdict(r), "label": r.config.label} for r in results], indent=2))
    return 0
