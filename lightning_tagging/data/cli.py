"""`lt data build <source> --out DIR ...` and `lt data info DIR`.

    lt data build synthetic --out data/synth --n-clips 2000 --seed 0 [--workers N] [--shard-size 256]
                            [--payload flac|pcm16]
    lt data build mtt --out data/mtt --audio-root /data/mtt [--split pons|clean ...]
    lt data build msd --out data/msd --split-dir MSD_split --audio-root /data/msd/songs
    lt data build jamendo --out data/jamendo --splits-dir .../split-0 --audio-root /data/jamendo
    lt data build csv --out data/mine --manifest clips.csv [--split-ratio 0.8 0.1 0.1]
    lt data info data/synth

Each registered source (``data/sources/``) is a subcommand of ``build`` with its own options.
Run standalone as ``python -m lightning_tagging.data.cli build synthetic ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from lightning_tagging.errors import UserError

from .build import DEFAULT_SHARD_SIZE, build_shards
from .errors import ShardDirectoryError
from .shards import PAYLOADS, SPLITS, STATS_FILE, VOCAB_FILE
from .sources import available_sources


def add_data_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``data build ...`` and ``data info ...`` on an ``add_subparsers()`` object."""
    parser = subparsers.add_parser("data", help="build and inspect shard directories")
    _add_subcommands(parser)
    return parser


def _add_subcommands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="{build,info}")
    build = commands.add_parser("build", help="build WebDataset shards from a dataset source")
    sources = build.add_subparsers(dest="source", required=True, metavar="{" + ",".join(available_sources()) + "}")
    for name, source_class in available_sources().items():
        sub = sources.add_parser(name, help=source_class.description, description=source_class.description)
        sub.add_argument("--out", required=True, type=Path, help="shard directory to create or resume")
        sub.add_argument("--workers", type=int, default=None, help="loader processes (default: all CPUs)")
        sub.add_argument(
            "--shard-size",
            type=int,
            default=DEFAULT_SHARD_SIZE,
            help=f"clips per shard (default: {DEFAULT_SHARD_SIZE})",
        )
        sub.add_argument(
            "--payload",
            choices=sorted(PAYLOADS),
            default="flac",
            help="audio encoding: lossless FLAC (default) or 16-bit WAV (bigger, faster to decode)",
        )
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        source_class.add_arguments(sub)
        sub.set_defaults(handler=_run_build, source_class=source_class)
    info = commands.add_parser("info", help="summarise a shard directory (its stats.json)")
    info.add_argument("dir", type=Path)
    info.set_defaults(handler=_run_info)


def _run_build(args: argparse.Namespace) -> int:
    source = args.source_class.from_arguments(args)
    stats = build_shards(
        source,
        args.out,
        workers=args.workers,
        shard_size=args.shard_size,
        payload=args.payload,
        progress=not args.no_progress,
    )
    print(format_summary(stats, args.out))
    return 0


def _run_info(args: argparse.Namespace) -> int:
    print(format_summary(read_stats(args.dir), args.dir))
    return 0


def read_stats(root: str | Path) -> dict[str, Any]:
    """The stats.json of a shard directory (a clear error when there is none)."""
    path = Path(root) / STATS_FILE
    if not path.is_file():
        raise ShardDirectoryError(
            f"{root} has no {STATS_FILE}: it is not a (finished) shard directory; "
            f"build one with `lt data build synthetic --out {root}`"
        )
    return json.loads(path.read_text())


def format_summary(stats: dict[str, Any], root: str | Path) -> str:
    """A readable summary of stats.json: splits, tag frequencies, skipped items."""
    args = stats["arguments"]
    lines = [
        f"{root}: {stats['clips']} clips, {stats['seconds'] / 3600:.2f} h, source {args['source']}",
        "  built with: " + ", ".join(f"{k}={v}" for k, v in args.items() if k != "source"),
        "",
    ]
    lines.append(f"  {'split':<6} {'clips':>8} {'shards':>7} {'hours':>8}")
    for split in SPLITS:
        s = stats["splits"][split]
        lines.append(f"  {split:<6} {s['clips']:>8} {s['shards']:>7} {s['seconds'] / 3600:>8.2f}")
    vocab_path = Path(root) / VOCAB_FILE
    vocab = json.loads(vocab_path.read_text()) if vocab_path.is_file() else list(stats["tags"])
    lines += ["", f"  {len(vocab)} tags (vocab.json order)   % of all clips, then clips per split"]
    lines.append(f"  {'tag':<16} {'%':>6} " + " ".join(f"{split:>7}" for split in SPLITS))
    for tag in vocab:
        share = 100.0 * stats["tags"].get(tag, 0) / max(1, stats["clips"])
        counts = " ".join(f"{stats['tags_by_split'][split].get(tag, 0):>7}" for split in SPLITS)
        lines.append(f"  {tag:<16} {share:>6.1f} {counts}")
    skipped = stats["skipped"]
    kinds = stats.get("skipped_by_kind", {})
    lines += [
        "",
        f"  skipped items: {len(skipped)}" + (f" ({', '.join(f'{k} {n}' for k, n in kinds.items())})" if kinds else ""),
    ]
    lines += [f"    {s['split']}/{s['key']}: {s['reason']}" for s in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"    ... and {len(skipped) - 10} more (see {STATS_FILE})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`lt data ...` with ``argv`` the arguments after ``data``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="lt data", description="build and inspect shard directories")
    _add_subcommands(parser)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:
        if os.environ.get("LT_DEBUG"):
            raise
        print(f"lt data: error: {error}", file=sys.stderr)
        sys.exit(2)
