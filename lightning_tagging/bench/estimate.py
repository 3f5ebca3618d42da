"""`lt bench estimate`: a training step's arithmetic and peak memory, worked out without running it.

    lt bench estimate --backbone musicnn samplecnn --batch 16 256 --precision fp32 bf16-mixed
    lt bench estimate --backbone musicnn --batch 256 --backbone-args '{"conv_impl": "fused"}'
    lt bench estimate --backbone samplecnn --batch 256 --gpu h200 --ops 8

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
- Memory traffic and a ceiling on clips/s (``traffic.py``, ``roofline.py``): the bytes every
  kernel of the second step reads and writes, and the fastest that step could run on a
  given GPU (``--gpu``, default an H100 SXM) if every kernel ran at the memory bandwidth or
  peak FLOP rate, whichever binds. With ``--ops N``, the N operators that take the most of it.

bf16-mixed runs under the CPU's autocast, whose casts match CUDA's for convolutions and
matrix products. compile and channels_last are not modelled: the eager module is estimated
(musicnn's ``fused_compiled`` as ``fused``; its fused kernels hold fewer temporaries and
move fewer bytes). Code that branches on the device takes its CPU branch: musicnn's
``conv_impl="auto"`` resolves as on a CPU (name ``conv2d`` for what a GPU runs), and
``mel_windows`` under bf16 runs its conv in fp32 and casts the output, which only a CPU does.
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

from lightning_tagging.bench import roofline
from lightning_tagging.bench.configs import (
    ModelConfig,
    add_config_arguments,
    build_backbone,
    build_frontend,
    configs_from,
)
from lightning_tagging.bench.traffic import OpRecorder
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
    ``train_gb_per_clip``: GB (1e9 bytes) the kernels of one training step read and write, per clip.
    ``ceiling_clips_per_s``: the most training clips/s that step could reach on ``gpu`` (a roofline),
    ``memory_bound_share`` the fraction of that ceiling's time spent in memory-bound kernels,
    ``ceiling_share_by_op`` the operators that take the most of it.
    """

    config: ModelConfig
    train_gflop_per_clip: float
    peak_gib: float
    peak_by_kind_gib: dict[str, float] = field(default_factory=dict)
    train_gb_per_clip: float = 0.0
    gpu: str = ""
    ceiling_clips_per_s: float = 0.0
    memory_bound_share: float = 0.0
    ceiling_share_by_op: dict[str, float] = field(default_factory=dict)


def estimate(config: ModelConfig, n_tags: int = 50, gpu: str = "h100-sxm", top_ops: int = 8) -> TrainingEstimate:
    """FLOPs, peak memory and memory traffic of training ``config`` (two Adam steps on fake tensors),
    and the ceiling on its clips/s on ``gpu`` (a key of :data:`roofline.GPUS`)."""
    flops = FlopCounterMode(display=False)
    memory = MemTracker()
    ops = OpRecorder()
    _fake_training(config, n_tags, steps=2, flop_counter=flops, memory_tracker=memory, op_recorder=ops)
    peak = next(iter(memory.get_tracker_snapshot("peak").values()), {})  # one device: the fake CPU
    ceiling = roofline.roofline(ops.records, roofline.GPUS[gpu])
    return TrainingEstimate(
        config=config,
        train_gflop_per_clip=flops.get_total_flops() / config.batch / 1e9,
        peak_gib=peak.get("Total", 0) / GIB,
        peak_by_kind_gib={ours: peak.get(theirs, 0) / GIB for theirs, ours in MEMORY_KINDS.items()},
        train_gb_per_clip=ops.total_bytes / config.batch / 1e9,
        gpu=roofline.GPUS[gpu].name,
        ceiling_clips_per_s=config.batch / ceiling.seconds,
        memory_bound_share=ceiling.memory_bound_seconds / ceiling.seconds,
        ceiling_share_by_op=ceiling.share_by_op(top_ops),
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
    _fake_training(plain, n_tags=50, steps=1, flop_counter=flops, memory_tracker=None, op_recorder=None)
    return flops.get_total_flops() / plain.batch / 1e9


def _fake_training(
    config: ModelConfig, n_tags: int, steps: int, flop_counter: FlopCounterMode, memory_tracker: MemTracker | None,
    op_recorder: OpRecorder | None,
) -> None:
    """``steps`` training steps of ``config`` on fake tensors.

    The first step's FLOPs go to ``flop_counter``; the last step's operators, the optimizer's
    included (it has met its state by then), to ``op_recorder``.
    """
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
                recording = op_recorder if op_recorder is not None and step == steps - 1 else contextlib.nullcontext()
                with recording:
                    with flop_counter if step == 0 else contextlib.nullcontext():
                        with autocast:
                            logits = module(audio)
                        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
                        optimizer.zero_grad(set_to_none=True)  # where Lightning's closure does it
                        loss.backward()
                    optimizer.step()


def format_row(result: TrainingEstimate, ops: int = 0) -> str:
    """One line per estimate (and ``ops`` more: the operators taking the most of the ceiling's time)."""
    kinds = ", ".join(f"{kind} {gib:.2f}" for kind, gib in result.peak_by_kind_gib.items() if gib >= 0.005)
    line = (f"{result.config.label:<42} {result.train_gflop_per_clip:7.2f} GFLOP/clip  "
            f"{result.train_gb_per_clip:6.3f} GB/clip  ceiling {result.ceiling_clips_per_s:8,.0f} clips/s "
            f"({result.memory_bound_share:.0%} memory-bound)  peak {result.peak_gib:7.2f} GiB  ({kinds})")
    shares = list(result.ceiling_share_by_op.items())[:ops]
    return "\n".join([line] + [f"    {share:6.1%}  {name}" for name, share in shares])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, batches=[16, 256])
    parser.add_argument("--gpu", default="h100-sxm", choices=list(roofline.GPUS),
                        help="whose datasheet peaks bound the clips/s ceiling")
    parser.add_argument("--ops", type=int, default=0, metavar="N",
                        help="under each row, the N operators that take the most of the ceiling's time")
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")


def main(args: argparse.Namespace) -> int:
    configs = configs_from(args)
    print(f"lt bench estimate: fake tensors, nothing runs; torch {torch.__version__}; "
          f"ceilings for {roofline.GPUS[args.gpu].name}", flush=True)
    results = []
    for config in configs:
        results.append(estimate(config, gpu=args.gpu, top_ops=max(args.ops, 8)))
        print(format_row(results[-1], args.ops), flush=True)
    if args.json:
        print(json.dumps([{**asdict(r), "label": r.config.label} for r in results], indent=2))
    return 0
