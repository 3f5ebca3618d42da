"""`lt tag FILE... (--checkpoint PATH | --weights musicnn:MTT_musicnn) [--top 10] [--json]
[--taggram PNG] [--embeddings NPY]`: top tags of any audio files.

Any format libsndfile reads (WAV, FLAC, OGG, MP3, ...), any sample rate (resampled to the
model's with soxr HQ) and channel count (averaged to mono). Prints the top tags of each file,
or one JSON object per line with ``--json`` (JSON Lines). A file that cannot be decoded is
reported (stderr; and as ``{"file", "error"}`` with ``--json``) and skipped; the others are
still tagged. Exit status: 0 when every file was tagged, 1 when any was skipped, 2 for
usage errors (bad checkpoint, unknown weights).

With several input files, ``--taggram out.png`` writes ``out-<file stem>.png`` per file (and
``--embeddings emb.npy`` ``emb-<file stem>.npy``); a folder (existing, or given with a trailing
``/``) gets ``<file stem>.png`` / ``.npy``. Embeddings are ``[n_patches, D]`` float32: the
penultimate-layer features of every patch (musicnn's ``penultimate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lightning_tagging.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lt tag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="audio files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a TaggingModule .ckpt (trained or imported)")
    source.add_argument("--weights", help="published weights, e.g. musicnn:MTT_musicnn (imported once, then cached)")
    parser.add_argument("--top", type=int, default=10, help="tags to show per file (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file (JSON Lines)")
    parser.add_argument("--taggram", help="PNG of tag probabilities over time")
    parser.add_argument("--embeddings", help="NPY of penultimate features per patch")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--batch-patches", type=int, default=64, help="patches per forward pass (default 64)")
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 on CUDA: ~13x faster model on an H200, probabilities up to ~5e-4 off",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def output_paths(template: str, inputs: list[str], suffix: str) -> list[Path]:
    """Where each input's taggram / embeddings go (see the module docstring); names never collide.

    Args:
        template: the option's value as typed (a trailing ``/`` marks a folder).
        inputs: the input files, in order.
        suffix: the file suffix to use when ``template`` names a folder or has none (``.png``, ``.npy``).
    """
    as_folder = template.endswith(("/", "\\")) or Path(template).is_dir()
    path = Path(template)
    if not as_folder and not path.suffix:
        path = path.with_suffix(suffix)
    if len(inputs) == 1 and not as_folder:
        return [path]
    seen: set[Path] = set()
    paths = []
    for name in inputs:
        stem = Path(name).stem
        candidate = path / f"{stem}{suffix}" if as_folder else path.with_name(f"{path.stem}-{stem}{path.suffix}")
        unique, n = candidate, 1
        while unique in seen:
            n += 1
            unique = candidate.with_name(f"{candidate.stem}-{n}{candidate.suffix}")
        seen.add(unique)
        paths.append(unique)
    return paths


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        raise UserError("--top must be at least 1")
    from lightning_tagging.tag import FailedFile, Tagger, default_device, load_module
    from lightning_tagging.taggram import save_taggram
    from lightning_tagging.weights.convert import resolve_weights

    checkpoint = args.checkpoint if args.checkpoint is not None else resolve_weights(args.weights)
    device = args.device or default_device()
    tagger = Tagger(load_module(checkpoint, device), device, batch_patches=args.batch_patches, allow_tf32=args.tf32)
    taggrams = output_paths(args.taggram, args.files, ".png") if args.taggram else None
    embeddings = output_paths(args.embeddings, args.files, ".npy") if args.embeddings else None

    failed = 0
    results = tagger.tag_files(args.files, embeddings=embeddings is not None, progress=not args.no_progress)
    for i, result in enumerate(results):
        if isinstance(result, FailedFile):
            failed += 1
            print(f"lt tag: skipped {result.path}: {result.error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": result.path, "error": result.error}), flush=True)
            continue
        top = result.top(args.top)
        if args.json:
            record = {
                "file": result.path,
                "seconds": round(result.seconds, 3),
                "patches": len(result.taggram),
                "patch_seconds": result.patch_seconds,
                "top": [{"tag": tag, "probability": round(p, 6)} for tag, p in top],
            }
            print(json.dumps(record), flush=True)
        else:
            print(
                f"{result.path}: {result.seconds:.1f} s, {len(result.taggram)} patches of {result.patch_seconds:.2f} s"
            )
            for tag, p in top:
                print(f"  {p:.4f}  {tag}")
        if taggrams is not None:
            save_taggram(result.taggram, result.tags, result.patch_seconds, taggrams[i], title=Path(result.path).name)
        if embeddings is not None:
            embeddings[i].parent.mkdir(parents=True, exist_ok=True)
            np.save(embeddings[i], result.embeddings.astype(np.float32))
    return 1 if failed else 0
