"""`lt bench data`: how fast the training stream decodes and crops, for 1..N DataLoader workers.

    lt bench data                                   # a synthetic corpus, FLAC and PCM shards, 1..CPUs workers
    lt bench data --root data/mtt --payload flac    # an existing shard directory (its training split)
    lt bench data --workers 1 2 4 8 --seconds 30 --crop-samples 59049

Measures exactly what training does per batch — read the tar, decode the audio (soundfile, to
int16 from 16-bit shards), cut ``patches_per_clip`` random crops, shuffle, stack — through the
real TaggingDataModule and DataLoader, with no model. The first ``--warmup`` batches (worker
start-up, shuffle buffer) are not timed. clips/s counts decoded clips, patches/s training
patches (``clips/s × patches_per_clip``). If training runs slower than patches/s here, the
model is the bottleneck; if not, add workers or use PCM shards.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lightning_tagging.data.build import build_shards
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.data.shards import PAYLOADS
from lightning_tagging.data.sources.synthetic import SyntheticSource


@dataclass
class DataResult:
    """Throughput of one (payload, workers) configuration."""

    payload: str
    workers: int
    clips_per_s: float
    patches_per_s: float
    batches: int
    seconds: float


def synthetic_corpus(out: Path, payload: str, clips: int, seconds: float) -> Path:
    """``clips`` training clips of ``seconds`` s each (no valid/test), built once per payload."""
    source = SyntheticSource(
        clips, seed=0, valid_fraction=0.0, test_fraction=0.0, min_seconds=seconds, max_seconds=seconds
    )
    build_shards(source, out, payload=payload, shard_size=16, progress=False)
    return out


def measure(root: str, workers: int, args: argparse.Namespace) -> tuple[float, float, int, float]:
    """(clips/s, patches/s, timed batches, timed seconds) of the training loader over ``root``."""
    warmup = max(args.warmup, workers)  # the first batch of every worker waits for its start and its buffer
    batches = warmup + args.batches
    dm = TaggingDataModule(
        root,
        batch_size=args.batch_size,
        num_workers=workers,
        crop_samples=args.crop_samples,
        patches_per_clip=args.patches_per_clip,
        shuffle_buffer=args.batch_size,
        train_samples_per_epoch=batches * args.batch_size,
    )
    iterator = iter(dm.train_dataloader())
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    timed = sum(1 for _ in iterator)
    elapsed = time.perf_counter() - start
    patches_per_s = timed * args.batch_size / elapsed
    return patches_per_s / args.patches_per_clip, patches_per_s, timed, elapsed


def format_row(result: DataResult) -> str:
    return (
        f"{result.payload:<7} {result.workers:>7} {result.clips_per_s:>9.1f} {result.patches_per_s:>10.1f} "
        f"{result.batches:>8} {result.seconds:>8.2f}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="a shard directory to read (default: build synthetic ones)")
    parser.add_argument(
        "--payload",
        nargs="+",
        default=sorted(PAYLOADS),
        choices=sorted(PAYLOADS),
        help="synthetic shards to build and read (default: flac pcm16)",
    )
    parser.add_argument(
        "--workers", nargs="+", type=int, default=None, help="DataLoader worker counts (default: 1 .. number of CPUs)"
    )
    parser.add_argument("--clips", type=int, default=48, help="synthetic clips (default: 48)")
    parser.add_argument("--seconds", type=float, default=29.0, help="synthetic clip length (default: 29, like MTT)")
    parser.add_argument("--crop-samples", type=int, default=59049, help="patch length (default: 59049, SampleCNN)")
    parser.add_argument("--patches-per-clip", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (at least one per worker)")
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")


def main(args: argparse.Namespace) -> int:
    workers = args.workers or list(range(1, (os.cpu_count() or 1) + 1))
    print(
        f"lt bench data: {os.cpu_count()} CPUs; batch {args.batch_size} × {args.crop_samples} samples, "
        f"{args.patches_per_clip} patches per decoded clip",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="lt-bench-data-") as scratch:
        if args.root:
            roots = {"shards": args.root}
        else:
            print(f"building {args.clips} synthetic clips of {args.seconds:g} s per payload ...", flush=True)
            roots = {p: str(synthetic_corpus(Path(scratch) / p, p, args.clips, args.seconds)) for p in args.payload}
        print(f"{'payload':<7} {'workers':>7} {'clips/s':>9} {'patches/s':>10} {'batches':>8} {'seconds':>8}")
        for payload, root in roots.items():
            for n in workers:
                result = DataResult(payload, n, *measure(root, n, args))
                print(format_row(result), flush=True)
                results.append(result)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0
