"""TaggingDataModule: a shard directory → training patches and whole evaluation clips.

    data:
      root: data/synth          # made by `lt data build synthetic --out data/synth`
      batch_size: 32
      num_workers: 2

Training batches are ``{"audio": [B, crop_samples], "tags": [B, n_tags]}`` float32 (audio
in [-1, 1], tags multi-hot); the crop length comes from the model
(``train_crop_samples``) unless ``crop_samples`` is set. Validation and test batches are
one whole clip each: ``{"audio": [1, samples], "tags": [1, n_tags], "key": [str]}``.

One training epoch is ``train_samples_per_epoch`` patches (default: training clips ×
``patches_per_clip``, so on average each clip is decoded once per epoch), rounded up so
that every DataLoader worker of every rank yields the same whole number of batches:

    batches per rank   = workers × ceil(ceil(samples / (batch_size × world_size)) / workers)
    patches per epoch  = batches per rank × batch_size × world_size

Shards are drawn with replacement (see ``streams.py``), so an epoch is a sample count,
not an exact pass; with DDP every rank runs the same number of steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .audio import SAMPLE_RATE
from .errors import DataError, ShardDirectoryError
from .shards import STATS_FILE, VOCAB_FILE, list_shards
from .streams import EvalClips, TrainPatches

BUILD_HINT = "build one with `lt data build synthetic --out {root}` (or another source, see `lt data build -h`)"


def read_vocab(root: Path) -> list[str]:
    """The directory's vocab.json, checked (a clear error when missing or malformed)."""
    if not root.is_dir():
        raise ShardDirectoryError(f"the shard directory {root} does not exist; " + BUILD_HINT.format(root=root))
    path = root / VOCAB_FILE
    if not path.is_file():
        raise ShardDirectoryError(f"{root} has no {VOCAB_FILE}, so it is not a finished shard directory (an "
                                  "interrupted build? rerun the same `lt data build` command to finish it); or "
                                  + BUILD_HINT.format(root=root))
    try:
        vocab = json.loads(path.read_text())
    except ValueError as error:
        raise ShardDirectoryError(f"{path} is not valid JSON ({error}); rebuild the directory") from error
    if not (isinstance(vocab, list) and vocab and all(isinstance(t, str) for t in vocab)
            and len(set(vocab)) == len(vocab)):
        raise ShardDirectoryError(f"{path} must be a non-empty list of distinct tag names; rebuild the directory")
    return vocab


class TaggingDataModule(pl.LightningDataModule):
    """Shards of ``root`` as training patches and whole validation / test clips.

    Args:
        root: shard directory (``<split>-NNNNNN.tar``, vocab.json, stats.json).
        batch_size: training patches per batch (per rank). Evaluation batches hold one clip.
        num_workers: DataLoader worker processes per loader (0: load in the main process).
        crop_samples: training patch length in samples at 16 kHz; None asks the model
            (``trainer.lightning_module.train_crop_samples``).
        patches_per_clip: random crops taken from each decoded training clip.
        shuffle_buffer: training patches held in each worker's shuffle buffer.
        train_samples_per_epoch: training patches per epoch, over all ranks (default:
            training clips × ``patches_per_clip``, from stats.json); rounded up as above.
        seed: seed of shard sampling, crop offsets and shuffling.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 32,
        num_workers: int = 2,
        crop_samples: int | None = None,
        patches_per_clip: int = 4,
        shuffle_buffer: int = 1000,
        train_samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, minimum in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                     ("patches_per_clip", patches_per_clip, 1), ("shuffle_buffer", shuffle_buffer, 1),
                                     ("crop_samples", crop_samples, 1),
                                     ("train_samples_per_epoch", train_samples_per_epoch, 1)):
            if value is not None and value < minimum:
                raise DataError(f"data.{name} must be at least {minimum}, got {value}")
        self.root = str(root)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.crop_samples, self.patches_per_clip = crop_samples, patches_per_clip
        self.shuffle_buffer, self.train_samples_per_epoch, self.seed = shuffle_buffer, train_samples_per_epoch, seed
        self._vocab = read_vocab(Path(root))
        stats_path = Path(root) / STATS_FILE
        self.stats: dict[str, Any] = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
        self.train_crop: int | None = None

    @property
    def vocab(self) -> list[str]:
        """The tag names, in the order of the ``tags`` columns (and the model's outputs)."""
        return list(self._vocab)

    @property
    def n_tags(self) -> int:
        return len(self._vocab)

    @property
    def sample_rate(self) -> int:
        """Sample rate of the shards' audio in Hz (the builder resamples everything to it)."""
        return int(self.stats.get("sample_rate", SAMPLE_RATE))

    def describe(self) -> dict[str, Any]:
        """What a run's results.json records about its data."""
        splits = self.stats.get("splits", {})
        return {
            "root": self.root,
            "sample_rate": self.sample_rate,
            "n_tags": self.n_tags,
            "clips": {split: info.get("clips") for split, info in splits.items()},
            "build": self.stats.get("arguments", {}),
        }

    # --- setup -----------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_crop = self._resolve_crop_samples()

    def _resolve_crop_samples(self) -> int:
        if self.crop_samples is not None:
            return self.crop_samples
        model = self.trainer.lightning_module if self.trainer is not None else None
        crop = getattr(model, "train_crop_samples", None)
        if crop is None:
            raise DataError("the training crop length is unknown: the model declares no train_crop_samples; "
                            "set data.crop_samples (samples at 16 kHz)")
        return int(crop)

    def _distribution(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _shards(self, split: str) -> list[str]:
        shards = [str(p) for p in list_shards(self.root, split)]
        if not shards:
            hint = ("set trainer.limit_val_batches=0 to train without validation, or " if split == "valid" else "")
            raise ShardDirectoryError(f"{self.root} has no {split} shards ({split}-000000.tar ...); {hint}"
                                      + BUILD_HINT.format(root=self.root))
        return shards

    # --- training --------------------------------------------------------------------------

    def train_batches_per_worker(self, world_size: int = 1) -> int:
        """Batches each DataLoader worker of each rank yields per epoch (see the module docstring)."""
        samples = self.train_samples_per_epoch
        if samples is None:
            clips = self.stats.get("splits", {}).get("train", {}).get("clips")
            if not clips:
                raise ShardDirectoryError(f"{self.root}/{STATS_FILE} does not say how many training clips there are; "
                                          "set data.train_samples_per_epoch, or rebuild the directory")
            samples = clips * self.patches_per_clip
        batches_per_rank = math.ceil(samples / (self.batch_size * world_size))
        return math.ceil(batches_per_rank / max(1, self.num_workers))

    def train_dataloader(self) -> DataLoader:
        if self.train_crop is None:
            self.setup("fit")
        rank, world_size = self._distribution()
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = TrainPatches(
            self._shards("train"), self._vocab, crop_samples=self.train_crop, patches_per_clip=self.patches_per_clip,
            shuffle_buffer=self.shuffle_buffer, batch_size=self.batch_size,
            batches_per_worker=self.train_batches_per_worker(world_size), workers=self.num_workers, seed=self.seed,
            rank=rank, world_size=world_size, epoch=epoch)
        # Persistent workers keep their copy of the dataset, whose epoch counter then moves on
        # every epoch (fresh workers would start from the same epoch and repeat the same draws).
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    # --- evaluation ------------------------------------------------------------------------

    def _eval_dataloader(self, split: str) -> DataLoader:
        rank, world_size = self._distribution()
        shards = self._shards(split)
        mine = shards[rank::world_size]
        counts = self.stats.get("shard_clips", {})
        n_clips = sum(counts[Path(s).name] for s in mine) if all(Path(s).name in counts for s in mine) else None
        dataset = EvalClips(shards, self._vocab, rank=rank, world_size=world_size, n_clips=n_clips)
        workers = min(self.num_workers, len(mine))  # a worker without a shard would only cost start-up time
        return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        return self._eval_dataloader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_dataloader("test")
