"""Iterable datasets over shards: endless random training patches, and every eval clip once.

Both read tars with WebDataset's tar reader and decode each sample themselves: the audio
with soundfile (``decode_audio``), the metadata with ``json`` — never pickle. A sample whose
audio or JSON cannot be read is skipped with a warning (and counted in ``skipped``); a tag
that is not in the vocabulary is an error (the shards and the model disagree about what
the outputs mean, which no amount of skipping fixes).

Distribution. Both streams work out their share from (rank, world size) and the DataLoader
worker they run in:

- training (open_clip style): each (rank, worker) draws shards *with replacement* from its
  own seeded generator, forever, and yields exactly ``batches_per_worker`` batches per
  epoch; so every rank runs the same number of steps and DDP never waits on a rank that
  ran out of data. An epoch is a fixed number of samples, not a pass over the data.
- evaluation: shards are dealt out round-robin, first over ranks, then over the workers
  of a rank; each clip is seen exactly once, whole, as a batch of one.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from .audio import decode_audio
from .errors import AudioDecodeError, DataError, VocabularyMismatchError
from .shards import AUDIO_EXTENSIONS

log = logging.getLogger(__name__)
DecodedSample = tuple[str, np.ndarray, np.ndarray]  # key, audio [samples], multi-hot [n_tags]


class CorruptSample(Exception):
    """A sample whose audio or metadata cannot be read."""


def decode_sample(sample: dict[str, Any], vocab_index: dict[str, int]) -> DecodedSample:
    """One raw WebDataset sample → (key, audio ``[samples]`` float32, multi-hot ``[n_tags]`` float32).

    Raises:
        CorruptSample: missing or unreadable audio or JSON.
        VocabularyMismatchError: a tag missing from the vocabulary.
    """
    key = sample.get("__key__", "?")
    audio_bytes = next((sample[ext] for ext in AUDIO_EXTENSIONS if ext in sample), None)
    if audio_bytes is None or "json" not in sample:
        raise CorruptSample(f"sample {key!r} lacks an audio ({'/'.join(AUDIO_EXTENSIONS)}) or json member")
    try:
        meta = json.loads(sample["json"])
        tags = meta["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise TypeError("tags must be a list of strings")
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptSample(f"sample {key!r} has unreadable metadata: {error}") from error
    target = np.zeros(len(vocab_index), np.float32)
    for tag in tags:
        index = vocab_index.get(tag)
        if index is None:
            raise VocabularyMismatchError(
                f"sample {key!r} ({sample.get('__url__', '?')}) has the tag {tag!r}, which vocab.json does not "
                "list: the shards and their vocabulary do not match; rebuild the directory with `lt data build`")
        target[index] = 1.0
    try:
        audio = decode_audio(audio_bytes)
    except AudioDecodeError as error:
        raise CorruptSample(f"sample {key!r}: {error}") from error
    return key, audio, target


def distribution_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int, int, int]:
    """(rank, world size, worker, workers) of the calling process; explicit rank/world size win."""
    env_rank, env_world, _, _ = wds.utils.pytorch_worker_info()
    worker = get_worker_info()
    return (env_rank if rank is None else rank, env_world if world_size is None else world_size,
            worker.id if worker else 0, worker.num_workers if worker else 1)


class _SampleReader:
    """Raw samples of a stream of shard paths; tar-level errors and corrupt samples warn and count."""

    def __init__(self) -> None:
        self.skipped = 0

    def _tar_error(self, error: Exception) -> bool:
        self.skipped += 1
        log.warning("skipping unreadable shard data: %r", error)
        return True  # go on with the next member or shard

    def samples(self, paths: Iterator[str], vocab_index: dict[str, int]) -> Iterator[DecodedSample]:
        raw = wds.tarfile_to_samples(handler=self._tar_error)({"url": p} for p in paths)
        for sample in raw:
            try:
                yield decode_sample(sample, vocab_index)
            except CorruptSample as error:
                self.skipped += 1
                log.warning("skipping corrupt sample: %s", error)


class EvalClips(IterableDataset):
    """Every clip of some shards exactly once, whole: ``{"audio": [1, samples], "tags": [1, n_tags], "key": [key]}``.

    Args:
        shards: shard paths of one split, in order.
        vocab: the tag vocabulary (the order of ``tags``).
        rank, world_size: this process's place in distributed evaluation (None: ask torch).
        n_clips: clips of this rank's shards, if known (reported as ``len``).
    """

    def __init__(self, shards: Sequence[str], vocab: Sequence[str], rank: int | None = None,
                 world_size: int | None = None, n_clips: int | None = None) -> None:
        self.shards, self.vocab_index = list(shards), {t: i for i, t in enumerate(vocab)}
        self.rank, self.world_size, self.n_clips = rank, world_size, n_clips
        self.reader = _SampleReader()

    def shards_of_rank(self) -> list[str]:
        rank, world, _, _ = distribution_info(self.rank, self.world_size)
        return self.shards[rank::world]

    def __len__(self) -> int:
        if self.n_clips is None:
            raise TypeError("the number of clips is unknown")
        return self.n_clips

    def __iter__(self) -> Iterator[dict[str, Any]]:
        _, _, worker, workers = distribution_info(self.rank, self.world_size)
        mine = self.shards_of_rank()[worker::workers]
        for key, audio, target in self.reader.samples(iter(mine), self.vocab_index):
            yield {"audio": torch.from_numpy(audio)[None], "tags": torch.from_numpy(target)[None], "key": [key]}


class TrainPatches(IterableDataset):
    """Endless random patches, batched: ``{"audio": [B, crop_samples], "tags": [B, n_tags]}`` float32.

    Each decoded clip gives ``patches_per_clip`` crops at random offsets (a clip shorter
    than the crop is zero-padded at the end), so decoding is paid once per several
    patches; a buffer of ``shuffle_buffer`` patches mixes clips and shards. Each (rank,
    worker) yields ``batches_per_worker`` batches per epoch from a generator seeded with
    (seed, epoch, rank, worker): runs are reproducible, epochs and workers differ.

    Args:
        shards: training shard paths.
        vocab: the tag vocabulary.
        crop_samples: samples per patch.
        patches_per_clip: crops taken from each decoded clip.
        shuffle_buffer: patches held for shuffling (the first batch waits for it to fill).
        batch_size: patches per batch.
        batches_per_worker: batches each DataLoader worker yields per epoch.
        workers: DataLoader workers (``len`` is ``batches_per_worker × max(1, workers)``).
        seed: base seed.
        rank, world_size: distributed place (None: ask torch).
        epoch: the first epoch's number (when resuming); each ``iter()`` starts the next.
    """

    def __init__(self, shards: Sequence[str], vocab: Sequence[str], crop_samples: int, patches_per_clip: int,
                 shuffle_buffer: int, batch_size: int, batches_per_worker: int, workers: int, seed: int,
                 rank: int | None = None, world_size: int | None = None, epoch: int = 0) -> None:
        self.shards, self.vocab_index = list(shards), {t: i for i, t in enumerate(vocab)}
        self.crop_samples, self.patches_per_clip = crop_samples, patches_per_clip
        self.shuffle_buffer, self.batch_size = max(1, shuffle_buffer), batch_size
        self.batches_per_worker, self.workers = batches_per_worker, workers
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, epoch
        self.reader = _SampleReader()

    def __len__(self) -> int:
        return self.batches_per_worker * max(1, self.workers)

    def _shard_stream(self, rng: np.random.Generator, since_last_clip: list[int]) -> Iterator[str]:
        """Shards drawn with replacement, forever; fails instead of spinning on unreadable data."""
        limit = 10 * len(self.shards) + 100
        while True:
            since_last_clip[0] += 1
            if since_last_clip[0] > limit:
                raise DataError(f"read {limit} shards in a row without one readable clip "
                                f"(e.g. {self.shards[0]}); the shards are empty or corrupt: rebuild them")
            yield self.shards[int(rng.integers(len(self.shards)))]

    def _patches(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        since_last_clip = [0]
        for _, audio, target in self.reader.samples(self._shard_stream(rng, since_last_clip), self.vocab_index):
            since_last_clip[0] = 0
            if len(audio) < self.crop_samples:
                audio = np.pad(audio, (0, self.crop_samples - len(audio)))
            for start in rng.integers(0, len(audio) - self.crop_samples + 1, self.patches_per_clip):
                # a copy, not a view: the shuffle buffer then holds patches, not whole clips
                yield audio[start : start + self.crop_samples].copy(), target

    def _shuffled(self, items: Iterator[Any], rng: np.random.Generator) -> Iterator[Any]:
        buffer = list(itertools.islice(items, self.shuffle_buffer))
        for item in items:
            i = int(rng.integers(len(buffer)))
            yield buffer[i]
            buffer[i] = item
        # never reached: the patch stream is endless

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, _, worker, _ = distribution_info(self.rank, self.world_size)
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
        self.epoch += 1  # the next iter() (persistent workers: the next epoch) draws differently
        patches = self._shuffled(self._patches(rng), rng)
        for _ in range(self.batches_per_worker):
            batch = list(itertools.islice(patches, self.batch_size))
            yield {"audio": torch.from_numpy(np.stack([a for a, _ in batch])),
                   "tags": torch.from_numpy(np.stack([t for _, t in batch]))}
