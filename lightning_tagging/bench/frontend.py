"""`lt bench frontend`: musicnn's front-end alone, per conv implementation and per Triton tile choice.

The input BatchNorm and the five front-end branches (two timbral convs, 38 and 67 mel bands × 7
frames; three temporal convs, 1 × 128, 64 and 32 frames; each → ReLU → BN → max over mel) are
about 95 % of musicnn's training FLOPs (``lt bench estimate``). Timing them alone, training
forward + backward and the forward alone, compares conv implementations, and the
``fused_triton`` kernels' tile choices (:class:`~lightning_tagging.models.triton_kernels.Tiles`),
in a short run: a whole-model row costs the mid-end and back-end too, and a compile per choice.

Baseline, in the same run: the same front-end in fp32 with musicnn's ``plain_args`` (library
``conv2d``, input BN not folded), as in `lt bench model`.

    lt bench frontend --precision bf16-mixed fp32 --conv-impls mel_windows fused_triton
    lt bench frontend --conv-impls fused_triton --tiles candidates --branches timbral_f74 timbral_f77

On a CPU ``fused_triton`` runs in Triton's interpreter, hundreds of times slower: use tiny shapes
(``--width 0.05 --n-mels 16 --n-frames 24 --batch 2``), as the tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lightning_tagging.bench.model import device_name
from lightning_tagging.bench.suite import describe, release_memory
from lightning_tagging.bench.timing import resolve_device, synchronize, time_per_call
from lightning_tagging.models import Musicnn
from lightning_tagging.models.musicnn import BRANCH_IMPLS, FRONTEND_BRANCHES
from lightning_tagging.models.triton_kernels import DEFAULT_TILES, Tiles, using_tiles

# Tile choices `--tiles candidates` times: the default first, then its neighbours (a budget cuts the
# tail). Each compiles for an H100 (sm_90) within its shared memory, and with next to no register spills
# in bf16 (tests/test_triton_tiles.py; registers and spills: `python -c "from lightning_tagging.models
# import triton_kernels as k; print(k.compile_for_gpu(...))"`). How the default was found, front-end
# training clips/s on an H200 (2026-11-26, bf16, batch 256; docs/performance.md), from the first choice
# (``Tiles()``: 3,413) on:
# - the conv output saved for backward: 4,058; packed windows: 4,887, and per-cell statistics: 5,202;
# - all three, the weight gradient in 64 filters × 32 taps × 32 frames: 5,320; 32 taps a step: 5,758;
# - the weight gradient in 64 × 64 × 32 instead: 6,062 (16 taps a step), 6,713 (32); its clips split
#   among 64 programs per tile, not 32: 7,068 (16 taps), 7,908 (32); 128: 8,383; 256: 8,538;
# - in 64 × 128 × 32, 128 ways: 8,540, the default.
# Here: neighbours of the default, the default recomputing its conv in backward (for the memory it
# saves), and the first choice.
CANDIDATE_TILES = (
    DEFAULT_TILES,
    Tiles(taps=32, wgrad_taps=64, wgrad_frames=32, wgrad_splits=256, pack=8, cell_stats=1, save=1),
    Tiles(taps=32, wgrad_taps=64, wgrad_frames=32, wgrad_splits=128, pack=8, cell_stats=1, save=1),
    Tiles(taps=32, wgrad_taps=128, wgrad_frames=32, wgrad_splits=64, pack=8, cell_stats=1, save=1),
    Tiles(taps=16, wgrad_taps=128, wgrad_frames=32, wgrad_splits=128, pack=8, cell_stats=1, save=1),
    dataclasses.replace(DEFAULT_TILES, save=0),
    Tiles(),
)


@dataclass
class FrontendRow:
    """One timed configuration of the front-end (``tiles``: a :attr:`Tiles.label`, for ``fused_triton``)."""

    precision: str
    conv_impl: str
    fold_input_bn: bool
    tiles: str | None = None
    train_ms: float | None = None  # forward + backward of one batch, median
    forward_ms: float | None = None  # the training forward alone (autograd recording)
    first_call_s: float | None = None  # the first training step: compiling kernels, cuDNN's first choices
    clips_per_s: float | None = None  # training clips per second through the front-end
    speedup: float | None = None  # train time of the baseline over this row's
    error: str | None = None

    @property
    def name(self) -> str:
        fold = "" if self.fold_input_bn else " unfolded"
        tiles = f" {self.tiles}" if self.tiles else ""
        return f"{self.precision} {self.conv_impl}{fold}{tiles}"


def plan_rows(precisions: list[str], conv_impls: list[str], tiles: list[Tiles]) -> list[tuple[FrontendRow, Tiles]]:
    """The baseline first, then every (precision, implementation[, tiles]) asked for."""
    rows = [(FrontendRow("fp32", "conv2d", fold_input_bn=False), DEFAULT_TILES)]
    for precision in precisions:
        for impl in conv_impls:
            for choice in tiles if impl == "fused_triton" else [DEFAULT_TILES]:
                label = choice.label if impl == "fused_triton" else None
                rows.append((FrontendRow(precision, impl, fold_input_bn=True, tiles=label), choice))
    return rows


def front_end_step(model: Musicnn, spectrogram: torch.Tensor, branches: list[str],
                   precision: str) -> tuple[Callable[[], None], Callable[[], torch.Tensor]]:
    """(training step, training forward) of ``model``'s front-end ``branches`` on ``spectrogram`` ``[B, 1, mels, T]``.

    The loss weights each branch output by a fixed random tensor, so every output element gets
    its own gradient (as the mid-end would send), and backward reaches every front-end weight.
    """
    generator = torch.Generator(device="cpu").manual_seed(1)
    weights: list[torch.Tensor] | None = None
    autocast = (torch.autocast(spectrogram.device.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())

    def forward() -> torch.Tensor:
        nonlocal weights
        with autocast:
            outputs = model.frontend_branches(spectrogram, branches)
        if weights is None:
            weights = [torch.randn(output.shape, generator=generator).to(spectrogram.device) for output in outputs]
        return sum((output.float() * w).sum() for output, w in zip(outputs, weights, strict=True))

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        forward().backward()

    return train_step, forward


def measure(row: FrontendRow, tiles: Tiles, model: Musicnn, spectrogram: torch.Tensor, branches: list[str],
            warmup: int, repeats: int) -> None:
    """Fill ``row``'s timings (or its error): the model switched to the row's implementation."""
    model.use_conv_impl(row.conv_impl)
    model.fold_input_bn = row.fold_input_bn
    train_step, forward = front_end_step(model, spectrogram, branches, row.precision)
    device = spectrogram.device
    with using_tiles(tiles):
        start = time.perf_counter()
        train_step()
        synchronize(device)
        row.first_call_s = time.perf_counter() - start
        train_s = time_per_call(train_step, device, warmup, repeats)
        row.forward_ms = time_per_call(forward, device, warmup, repeats) * 1000
    row.train_ms = train_s * 1000
    row.clips_per_s = spectrogram.shape[0] / train_s


def run(args: argparse.Namespace) -> list[FrontendRow]:
    """Every row of the plan, while the budget lasts; each printed as it is measured."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = Musicnn(n_mels=args.n_mels, n_frames=args.n_frames, width=args.width).to(device).train()
    for parameter in model.parameters():  # weights as training sees them, not the initial zeros of BN's β
        parameter.data += 0.01 * torch.randn_like(parameter)
    spectrogram = torch.randn(args.batch, 1, args.n_mels, args.n_frames, device=device)
    rows = plan_rows(args.precision, args.conv_impls, args.tiles)
    print(f"lt bench frontend on {device_name(device)}, torch {torch.__version__}: musicnn width {args.width}, "
          f"batch {args.batch}, {args.n_mels} mels × {args.n_frames} frames, branches {' '.join(args.branches)}; "
          f"{len(rows)} rows, budget {args.budget_s:g} s", flush=True)
    started, baseline_ms = time.monotonic(), None
    for index, (row, tiles) in enumerate(rows):
        if index > 0 and time.monotonic() - started > args.budget_s:  # (the baseline always runs)
            row.error = "skipped: over the budget"
        else:
            try:
                measure(row, tiles, model, spectrogram, list(args.branches), args.warmup, args.repeats)
            except Exception as error:  # a tile choice that fails to compile, out of memory: the next row runs
                row.error = describe(error)
            release_memory(device)
        if baseline_ms is None and row.train_ms is not None:
            baseline_ms = row.train_ms
        if baseline_ms is not None and row.train_ms is not None:
            row.speedup = baseline_ms / row.train_ms
        print(format_row(row), flush=True)
    return [row for row, _ in rows]


def fastest_tiles(rows: list[FrontendRow], precision: str) -> str | None:
    """The label of the ``fused_triton`` tiles whose training step was fastest in ``precision``, if any ran."""
    timed = [(row.train_ms, row.tiles) for row in rows
             if row.conv_impl == "fused_triton" and row.precision == precision and row.train_ms is not None]
    return min(timed)[1] if timed else None


def format_row(row: FrontendRow) -> str:
    if row.train_ms is None:
        return f"{row.name:<58} {row.error}"
    speedup = "-" if row.speedup is None else f"x{row.speedup:.2f}"
    return (f"{row.name:<58} train {row.train_ms:9.2f} ms ({row.clips_per_s:9.1f} clips/s)  "
            f"forward {row.forward_ms:9.2f} ms  first step {row.first_call_s:6.1f} s  {speedup} vs baseline")


def _tiles_argument(text: str) -> list[Tiles]:
    if text == "candidates":
        return list(CANDIDATE_TILES)
    if text == "default":
        return [DEFAULT_TILES]
    try:
        return [Tiles.parse(text)]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16-mixed"), default=["fp32", "bf16-mixed"])
    parser.add_argument("--conv-impls", nargs="+", choices=BRANCH_IMPLS, default=["mel_windows", "fused_triton"])
    parser.add_argument("--tiles", nargs="+", type=_tiles_argument, default=[[DEFAULT_TILES]],
                        help="fused_triton's tile choices: 'default', 'candidates' (bench/frontend.py's "
                             f"list) or labels such as {DEFAULT_TILES.label!r}")
    parser.add_argument("--branches", nargs="+", choices=FRONTEND_BRANCHES, default=list(FRONTEND_BRANCHES),
                        help="the branches to run (default: all five)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=float, default=1.0, help="musicnn's width (filters ×)")
    parser.add_argument("--n-mels", type=int, default=96)
    parser.add_argument("--n-frames", type=int, default=187)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median reported)")
    parser.add_argument("--budget-s", type=float, default=float("inf"),
                        help="skip the rows still to run after this many seconds (the baseline always runs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")
    parser.add_argument("--fastest-tiles-to", type=Path, default=None, metavar="FILE",
                        help="write the label of the fastest fused_triton tiles in the first --precision to FILE "
                             "(empty if none ran), e.g. for LT_TRITON_TILES")


def main(args: argparse.Namespace) -> int:
    args.tiles = list(_unique(choice for group in args.tiles for choice in group))
    rows = run(args)
    if args.json:
        print(json.dumps([{**asdict(row), "name": row.name} for row in rows], indent=2))
    if args.fastest_tiles_to is not None:
        args.fastest_tiles_to.write_text(fastest_tiles(rows, args.precision[0]) or "")
    return 0


def _unique(tiles: Iterable[Tiles]) -> Iterator[Tiles]:
    seen: set[Tiles] = set()
    for choice in tiles:
        if choice not in seen:
            seen.add(choice)
            yield choice
