"""The generic shard builder: a source's items → WebDataset shards + vocab.json + stats.json.

Order and determinism. The items of each split are cut, in the source's order, into runs
of ``shard_size``: run ``k`` of split ``s`` is shard ``<s>-<k:06d>.tar``, whatever happens
to other items. Items are loaded (decoded or synthesised) and encoded in a process pool,
but results are written in item order, so the shards are the same bytes for the same
arguments however many workers run and however fast each one is. An item whose loader
fails (unreadable audio, ``SkipItem``) is left out of its shard and listed in stats.json
with the reason, so a shard may hold fewer than ``shard_size`` clips.

Resuming. Each shard is written to ``<name>.tmp`` and renamed when complete, after its
summary (clips, seconds, tag counts, skips) has been saved to ``<out>/.build/<name>.json``.
A rerun with the same arguments skips every shard that exists with its summary and only
loads the items of the others; vocab.json, index.json and stats.json are written last, from
the summaries. A directory built with other arguments is refused rather than mixed.

Skipped items. stats.json lists each with its split, key, origin (the file), reason, and
kind ("missing", "unreadable", "empty", "too_short", "silent", ... see
``data/clip_files.py``), and counts them per kind in ``skipped_by_kind``.

index.json maps every shard to its keys, in order: readers use it to deal evaluation clips
to ranks exactly and to draw training subsets without opening the shards.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE
from .errors import AudioDecodeError, BuildError, SkipItem
from .shards import (
    INDEX_FILE,
    PAYLOADS,
    SPLITS,
    STATS_FILE,
    VOCAB_FILE,
    TarShardWriter,
    encode_audio,
    sample_json,
    shard_keys,
    shard_name,
    write_json_atomic,
)
from .sources import Item, Loader, Source

BUILD_DIR = ".build"  # per-shard summaries and the build's arguments, for resuming
DEFAULT_SHARD_SIZE = 256


@dataclass
class ShardSummary:
    """What one shard holds; saved next to the shard so a resumed build need not re-read it."""

    clips: int = 0
    seconds: float = 0.0
    tags: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def load_and_encode(load: Loader, payload: str) -> tuple[str, Any, Any, float]:
    """Run in a worker: ``("ok", extension, bytes, seconds)`` or ``("skip", reason, kind, 0)``."""
    try:
        waveform = load()
    except SkipItem as error:
        return "skip", str(error) or type(error).__name__, error.kind, 0.0
    except AudioDecodeError as error:
        return "skip", str(error), "unreadable", 0.0
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1 or waveform.size == 0 or not np.isfinite(waveform).all():
        reason = f"loader returned an invalid waveform (shape {waveform.shape}, must be 1-D, finite)"
        return "skip", reason, "invalid", 0.0
    extension, data = encode_audio(waveform, payload)
    return "ok", extension, data, waveform.size / SAMPLE_RATE


class _Inline:
    """Stand-in for a process pool when ``workers <= 1``: runs each job at submission."""

    def submit(self, fn: Any, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None


def _check_key(item: Item, seen: set[str]) -> None:
    if not item.key or any(c in item.key for c in "./\\ ") or item.key.startswith("_"):
        raise BuildError(
            f"invalid key {item.key!r}: keys must be non-empty, not start with '_', and have no "
            "dots, slashes or spaces (WebDataset splits file names at the first dot)"
        )
    if item.key in seen:
        raise BuildError(f"the source yields the key {item.key!r} twice; keys must be unique")
    if item.split not in SPLITS:
        raise BuildError(f"item {item.key!r} has split {item.split!r}; splits are {', '.join(SPLITS)}")
    seen.add(item.key)


def _check_arguments(out: Path, arguments: dict[str, Any]) -> None:
    """Record the build's arguments; refuse a directory that was built with others."""
    record = out / BUILD_DIR / "arguments.json"
    if record.exists():
        previous = json.loads(record.read_text())
        if previous != arguments:
            changed = sorted(k for k in set(previous) | set(arguments) if previous.get(k) != arguments.get(k))
            raise BuildError(
                f"{out} holds shards built with other arguments (differences: {', '.join(changed)}); "
                "build into another --out directory, or delete this one first"
            )
    else:
        write_json_atomic(record, arguments)


class _ShardPlan:
    """Assigns items to shards (the k-th item of a split goes to shard k // shard_size)."""

    def __init__(self, out: Path, shard_size: int) -> None:
        self.out, self.shard_size = out, shard_size
        self.position = dict.fromkeys(SPLITS, 0)

    def place(self, split: str) -> str:
        name = shard_name(split, self.position[split] // self.shard_size)
        self.position[split] += 1
        return name

    def complete(self, name: str) -> bool:
        return (self.out / name).exists() and (self.out / BUILD_DIR / f"{name}.json").exists()


class _Writers:
    """The open shard of each split; a split's shard is committed when its next one opens or at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.open: dict[str, tuple[str, TarShardWriter, ShardSummary]] = {}

    def get(self, split: str, name: str) -> tuple[TarShardWriter, ShardSummary]:
        if split in self.open and self.open[split][0] != name:
            self.commit(split)
        if split not in self.open:
            self.open[split] = (name, TarShardWriter(self.out / name), ShardSummary())
        _, writer, summary = self.open[split]
        return writer, summary

    def commit(self, split: str) -> None:
        name, writer, summary = self.open.pop(split)
        summary.tags = dict(sorted(summary.tags.items()))
        write_json_atomic(self.out / BUILD_DIR / f"{name}.json", summary.__dict__)  # before the rename
        writer.commit()

    def commit_all(self) -> None:
        for split in list(self.open):
            self.commit(split)

    def abort_all(self) -> None:
        for _, writer, _ in self.open.values():
            writer.abort()
        self.open.clear()


def build_shards(
    source: Source,
    out: str | Path,
    *,
    workers: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    payload: str = "flac",
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or finish building) the shards of ``source`` in ``out``.

    Args:
        source: the dataset (see ``data/sources``).
        out: the shard directory (created if needed).
        workers: loader processes (default: ``os.cpu_count()``; ≤ 1 runs in this process).
        shard_size: items per shard (a shard holds fewer when items are skipped).
        payload: "flac" (lossless 16-bit, default) or "pcm16" (16-bit WAV: larger, faster to decode).
        progress: show a tqdm progress bar.

    Returns:
        The contents written to ``stats.json``.

    Workers are started with "spawn" (safe whatever threads the caller runs, e.g. torch's):
    a script that calls this with ``workers > 1`` needs the usual
    ``if __name__ == "__main__":`` guard. `lt data build` has it.
    """
    if payload not in PAYLOADS:
        raise BuildError(f"unknown payload {payload!r}; choose one of {', '.join(PAYLOADS)}")
    if shard_size < 1:
        raise BuildError("--shard-size must be at least 1")
    out = Path(out)
    (out / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    arguments = {"source": source.name, **source.arguments(), "shard_size": shard_size, "payload": payload}
    _check_arguments(out, arguments)
    workers = (os.cpu_count() or 1) if workers is None else workers

    plan, writers = _ShardPlan(out, shard_size), _Writers(out)
    shards: dict[str, list[str]] = {split: [] for split in SPLITS}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else _Inline()
    window = max(4, 8 * workers)  # jobs in flight: keeps workers busy, bounds memory
    pending: collections.deque[tuple[Item, str, Future]] = collections.deque()
    bar = tqdm(
        total=source.n_items(), unit="clip", desc=f"building {source.name}", disable=not progress, smoothing=0.05
    )

    def write(item: Item, name: str, future: Future) -> None:
        status, a, b, seconds = future.result()
        writer, summary = writers.get(item.split, name)
        if status == "ok":
            writer.add(item.key, a, b, sample_json(item.tags, f"{source.name}:{item.origin}"))
            summary.clips += 1
            summary.keys.append(item.key)
            summary.seconds += seconds
            for tag in item.tags:
                summary.tags[tag] = summary.tags.get(tag, 0) + 1
        else:
            summary.skipped.append({"key": item.key, "origin": item.origin, "reason": a, "kind": b})
        bar.update()

    try:
        seen: set[str] = set()
        for item in source.items():
            _check_key(item, seen)
            name = plan.place(item.split)
            if not shards[item.split] or shards[item.split][-1] != name:
                shards[item.split].append(name)
            if plan.complete(name):
                bar.update()
                continue
            pending.append((item, name, pool.submit(load_and_encode, item.load, payload)))
            while len(pending) >= window:
                write(*pending.popleft())
        while pending:
            write(*pending.popleft())
        writers.commit_all()
    except BaseException:
        writers.abort_all()  # an unfinished shard never gets its final name
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    stats, index = _collect_stats(out, shards, arguments)
    vocab = source.vocab() or sorted(stats["tags"], key=lambda t: (-stats["tags"][t], t))
    unknown = sorted(set(stats["tags"]) - set(vocab))
    if unknown:
        raise BuildError(f"the source's vocabulary lacks tags its items carry: {unknown[:10]}")
    write_json_atomic(out / VOCAB_FILE, vocab)
    write_json_atomic(out / INDEX_FILE, index)
    write_json_atomic(out / STATS_FILE, stats)  # last: its presence means the directory is complete
    return stats


def _collect_stats(
    out: Path, shards: dict[str, list[str]], arguments: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """stats.json and index.json from the shard summaries."""
    splits: dict[str, Any] = {}
    tags_by_split: dict[str, dict[str, int]] = {}
    shard_clips: dict[str, int] = {}
    index: dict[str, list[str]] = {}
    skipped: list[dict[str, str]] = []
    for split, names in shards.items():
        summaries = [json.loads((out / BUILD_DIR / f"{name}.json").read_text()) for name in names]
        counts: collections.Counter[str] = collections.Counter()
        for name, summary in zip(names, summaries, strict=True):
            shard_clips[name] = summary["clips"]
            # summaries of builds before index.json existed lack the keys: read them from the tar
            index[name] = summary["keys"] if "keys" in summary else shard_keys(out / name)
            counts.update(summary["tags"])
            skipped += [{"split": split, "kind": "other", **s} for s in summary["skipped"]]
        splits[split] = {
            "clips": sum(s["clips"] for s in summaries),
            "shards": len(names),
            "seconds": round(sum(s["seconds"] for s in summaries), 3),
        }
        tags_by_split[split] = dict(sorted(counts.items()))
    total = collections.Counter[str]()
    for counts_ in tags_by_split.values():
        total.update(counts_)
    return {
        "clips": sum(s["clips"] for s in splits.values()),
        "seconds": round(sum(s["seconds"] for s in splits.values()), 3),
        "splits": splits,
        "tags": dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))),
        "tags_by_split": tags_by_split,
        "shard_clips": shard_clips,
        "skipped_by_kind": dict(sorted(collections.Counter(s["kind"] for s in skipped).items())),
        "skipped": skipped,
        "arguments": arguments,
    }, index
