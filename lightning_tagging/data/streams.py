"""Iterable datasets over shards: endless random training patches, and every eval clip once.

Both are given the shards as ``(url, keys)`` pairs from the directory's index (the keys a
stream may use from that shard, in order) and read them with ``ShardReader``: audio with
soundfile, metadata with ``json``, never pickle. Corrupt samples are skipped and counted;
an unopenable shard stops the run with its name (see ``reader.py``).

Distribution. Rank and world size are fixed when a dataset is constructed (explicit, or
detected in the constructing process: see ``distributed.py``); the DataLoader worker is
asked at iteration time.

- Training (open_clip style): each (rank, worker) draws shards *with replacement* from its
  own generator seeded with (seed, epoch, rank, worker), forever, each shard with
  probability proportional to the clips it holds for this run (all of them, or those of a
  ``train_size`` subset), and yields exactly ``batches_per_worker`` batches per epoch. So
  every rank runs the same number of steps, DDP never waits on a rank that ran out of
  data, any number of shards serves any number of ranks × workers, and a skipped sample
  changes nothing for other ranks. An epoch is a number of samples, not an exact pass.
- Evaluation: the split's clips, numbered in index order, are cut into contiguous ranges,
  first one per rank, then one per worker of a rank (sizes differ by at most one). Every
  clip is evaluated exactly once, whole, however many shards, ranks and workers there
  are; a worker opens only the shards its range touches and reads only its own samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .audio import pcm16_to_float32
from .distributed import resolve_distribution, share, worker_info
from .errors import DataError
from .reader import ShardReader
from .shared_batch import stack_for_transfer

Shards = Sequence[tuple[str, Sequence[str]]]  # (url, keys this stream uses from it, in shard order)


class EvalClips(IterableDataset):
    """Every clip of one split exactly once, whole: ``{"audio": [1, samples], "tags": [1, n_tags], "key": [key]}``.

    ``audio`` is float32 in [-1, 1], decoded as ``decode_audio`` does; unlike training batches it
    stays float32 even from 16-bit shards: one clip per batch, read once per evaluation, is not
    where the bytes are (and evaluation then needs no conversion anywhere).

    A rank whose range is empty (fewer clips than ranks) yields one empty batch
    (``audio`` ``[0, 0]``, ``key`` ``[]``), so that it still runs the evaluation loop and
    meets the other ranks when they gather results.

    Args:
        shards: ``(url, keys)`` of the split's shards, in index order.
        vocab: the tag vocabulary (the order of ``tags``).
        rank, world_size: this process's place (None: detected now, see ``distributed.py``).
    """

    def __init__(
        self, shards: Shards, vocab: Sequence[str], rank: int | None = None, world_size: int | None = None
    ) -> None:
        self.shards = [(url, list(keys)) for url, keys in shards]
        self.vocab_index = {t: i for i, t in enumerate(vocab)}
        self.rank, self.world_size = resolve_distribution(rank, world_size)
        self.n_total = sum(len(keys) for _, keys in self.shards)
        self.rank_range = share(self.n_total, self.world_size, self.rank)
        self.reader = ShardReader(self.vocab_index)

    @property
    def n_clips(self) -> int:
        """Clips this rank evaluates."""
        return self.rank_range[1] - self.rank_range[0]

    def __len__(self) -> int:
        return max(1, self.n_clips)

    def keys_of(self, start: int, stop: int) -> Iterator[tuple[str, set[str]]]:
        """(url, wanted keys) of the shards that clips ``[start, stop)`` (index order) lie in."""
        offset = 0
        for url, keys in self.shards:
            lo, hi = max(start, offset), min(stop, offset + len(keys))
            if lo < hi:
                yield url, set(keys[lo - offset : hi - offset])
            offset += len(keys)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = worker_info()
        if self.n_clips == 0:
            if worker == 0:
                yield {"audio": torch.zeros(0, 0), "tags": torch.zeros(0, len(self.vocab_index)), "key": []}
            return
        first, last = share(self.n_clips, workers, worker)
        start = self.rank_range[0]
        for url, wanted in self.keys_of(start + first, start + last):
            for key, audio, target in self.reader.samples(url, wanted):
                yield {"audio": torch.from_numpy(audio)[None], "tags": torch.from_numpy(target)[None], "key": [key]}


class TrainPatches(IterableDataset):
    """Endless random patches, batched: ``{"audio": [B, crop_samples], "tags": [B, n_tags], "skipped": []}``.

    ``audio`` is int16 (the shards' 16-bit samples; the model divides by 32768 on the device)
    when every patch of the batch decoded as int16, which all do from shards (16 kHz mono
    16-bit); otherwise the whole batch is float32 in [-1, 1], its int16 patches divided by
    32768 here. Both give the model the same values: int16 only halves the bytes stacked,
    pinned and copied to the device. ``tags`` is float32; ``skipped`` (int64 scalar) counts the
    samples this worker skipped as corrupt since its previous batch (the module logs their sum).

    Each decoded clip gives ``patches_per_clip`` crops at random offsets (a clip shorter
    than the crop is zero-padded at the end), so decoding is paid once per several
    patches; a buffer of ``shuffle_buffer`` patches mixes clips and shards. Each (rank,
    worker) yields ``batches_per_worker`` batches per epoch from a generator seeded with
    (seed, epoch, rank, worker): runs are reproducible, epochs and workers differ.

    Args:
        shards: ``(url, keys)``: the shards and the keys to train on from each (a subset's).
        vocab: the tag vocabulary.
        crop_samples: samples per patch.
        patches_per_clip: crops taken from each decoded clip.
        shuffle_buffer: patches held for shuffling (the first batch waits for it to fill).
        batch_size: patches per batch.
        batches_per_worker: batches each DataLoader worker yields per epoch.
        workers: DataLoader workers (``len`` is ``batches_per_worker × max(1, workers)``).
        seed: base seed.
        rank, world_size: distributed place (None: detected now, see ``distributed.py``).
        epoch: the first epoch's number (when resuming); each ``iter()`` starts the next.
        keep_pcm16: keep 16-bit samples as int16 (default); False decodes every clip to
            float32 (``decode_audio``), giving float32 batches with the same values.
    """

    def __init__(
        self,
        shards: Shards,
        vocab: Sequence[str],
        crop_samples: int,
        patches_per_clip: int,
        shuffle_buffer: int,
        batch_size: int,
        batches_per_worker: int,
        workers: int,
        seed: int,
        rank: int | None = None,
        world_size: int | None = None,
        epoch: int = 0,
        keep_pcm16: bool = True,
    ) -> None:
        self.shards = [(url, frozenset(keys)) for url, keys in shards if keys]
        if not self.shards:
            raise DataError("no training clips to draw from")
        weights = np.array([len(keys) for _, keys in self.shards], np.float64)
        self.probabilities = weights / weights.sum()  # every clip equally likely, whatever its shard's size
        self.vocab_index = {t: i for i, t in enumerate(vocab)}
        self.crop_samples, self.patches_per_clip = crop_samples, patches_per_clip
        self.shuffle_buffer, self.batch_size = max(1, shuffle_buffer), batch_size
        self.batches_per_worker, self.workers = batches_per_worker, workers
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = resolve_distribution(rank, world_size)
        self.reader = ShardReader(self.vocab_index, keep_pcm16=keep_pcm16)

    def __len__(self) -> int:
        return self.batches_per_worker * max(1, self.workers)

    def _clips(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Clips of shards drawn with replacement, forever; fails instead of spinning on unreadable data."""
        limit = 10 * len(self.shards) + 100
        since_last_clip = 0
        while True:
            url, keys = self.shards[int(rng.choice(len(self.shards), p=self.probabilities))]
            for _, audio, target in self.reader.samples(url, set(keys)):
                since_last_clip = 0
                yield audio, target
            since_last_clip += 1
            if since_last_clip > limit:
                raise DataError(
                    f"read {limit} shards in a row without one readable clip (e.g. {url}); the shards "
                    "are empty or corrupt: rebuild them"
                )

    def _patches(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for audio, target in self._clips(rng):
            if len(audio) < self.crop_samples:
                audio = np.pad(audio, (0, self.crop_samples - len(audio)))  # zeros of audio's dtype
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
        worker, _ = worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        self.epoch += 1  # the next iter() (persistent workers: the next epoch) draws differently
        patches = self._shuffled(self._patches(rng), rng)
        reported = self.reader.skipped
        for _ in range(self.batches_per_worker):
            batch = list(itertools.islice(patches, self.batch_size))
            skipped, reported = self.reader.skipped - reported, self.reader.skipped
            yield {
                "audio": stack_audio([a for a, _ in batch]),  # [B, crop_samples] int16 or float32
                "tags": stack_for_transfer([t for _, t in batch]),
                "skipped": torch.tensor(skipped, dtype=torch.int64),
            }


def stack_audio(patches: Sequence[np.ndarray]) -> torch.Tensor:
    """Patches ``[crop_samples]`` → one batch ``[B, crop_samples]`` (see :func:`stack_for_transfer`) of one dtype.

    int16 when every patch is int16; otherwise float32, the int16 patches divided by 32768 (exact),
    so a batch never mixes dtypes and its values do not depend on which patches were int16.
    """
    if any(patch.dtype != np.int16 for patch in patches):
        patches = [pcm16_to_float32(patch) if patch.dtype == np.int16 else patch for patch in patches]
    return stack_for_transfer(patches)
