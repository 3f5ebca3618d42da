"""TaggingDataModule: a shard directory → training patches and whole evaluation clips.

    data:
      root: data/synth          # made by `lt data build synthetic --out data/synth`; or a URL
      batch_size: 32
      num_workers: 2
      train_size: 0.1           # optional: a nested subset of the training clips (see subsets.py)

Training batches are ``{"audio": [B, crop_samples], "tags": [B, n_tags], "skipped": []}``
(audio float32 in [-1, 1]; tags multi-hot float32; ``skipped`` the corrupt samples a worker
passed over since its last batch); the crop length comes from the model
(``train_crop_samples``) unless ``crop_samples`` is set. Validation and test batches are one
whole clip each: ``{"audio": [1, samples], "tags": [1, n_tags], "key": [str]}``.

Training audio travels as int16: the DataLoader yields the shards' 16-bit samples (half the
bytes to stack, pin and copy; see ``streams.TrainPatches``) and ``on_after_batch_transfer``
divides them by 32768 on the device, so every LightningModule receives exactly the float32
that decoding to float would have given.

One training epoch is ``train_samples_per_epoch`` patches (default: training clips — of the
subset, if ``train_size`` is set — × ``patches_per_clip``, so on average each clip is decoded
once per epoch), rounded up so that every DataLoader worker of every rank yields the same
whole number of batches:

    batches per rank   = workers × ceil(ceil(samples / (batch_size × world_size)) / workers)
    patches per epoch  = batches per rank × batch_size × world_size

Shards are drawn with replacement (see ``streams.py``), so an epoch is a sample count, not an
exact pass; with DDP every rank runs the same number of steps. Evaluation deals each clip of
the split to exactly one rank and worker.

Shards may be remote: ``root`` can be any URL of ``urls.py`` (http(s), s3, gs, ...), and
``shard_url`` a template such as ``"pipe:aws s3 cp s3://bucket/mtt/{name} -"`` when the tars
are read by a command while vocab.json / stats.json / index.json sit in ``root``.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_tagging.resume import ResumableTrainLoader

from .audio import SAMPLE_RATE, pcm16_to_float
from .directory import ShardDirectory
from .distributed import detect_distribution
from .errors import DataError
from .streams import EvalClips, TrainPatches
from .subsets import select_subset

START_METHODS = ("fork", "spawn", "forkserver")


class TaggingDataModule(pl.LightningDataModule):
    """Shards of ``root`` as training patches and whole validation / test clips.

    Args:
        root: shard directory (path or URL) with vocab.json, stats.json, index.json and,
            unless ``shard_url`` says otherwise, the ``<split>-NNNNNN.tar`` shards.
        batch_size: training patches per batch (per rank). Evaluation batches hold one clip.
        num_workers: DataLoader worker processes per loader (0: load in the main process).
        crop_samples: training patch length in samples at 16 kHz; None asks the model
            (``trainer.lightning_module.train_crop_samples``).
        patches_per_clip: random crops taken from each decoded training clip.
        shuffle_buffer: training patches held in each worker's shuffle buffer.
        train_samples_per_epoch: training patches per epoch, over all ranks (default:
            training clips × ``patches_per_clip``); rounded up as above.
        seed: seed of shard sampling, crop offsets and shuffling.
        train_size: train on a subset: a fraction of the training clips (0 < f ≤ 1.0) or a
            count (an int); None: all. Subsets are nested and fixed by ``subset_seed``.
        subset_seed: which clips a subset holds; independent of ``seed``.
        shard_url: where the tars are, as a template with ``{name}``; None: inside ``root``.
        worker_start_method: how DataLoader workers start: "fork", "spawn" or "forkserver"
            (None: the platform's default).
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
        train_size: int | float | None = None,
        subset_seed: int = 0,
        shard_url: str | None = None,
        worker_start_method: str | None = None,
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("patches_per_clip", patches_per_clip, 1),
            ("shuffle_buffer", shuffle_buffer, 1),
            ("crop_samples", crop_samples, 1),
            ("train_samples_per_epoch", train_samples_per_epoch, 1),
        ):
            if value is not None and value < minimum:
                raise DataError(f"data.{name} must be at least {minimum}, got {value}")
        if worker_start_method not in (None, *START_METHODS):
            raise DataError(
                f"data.worker_start_method must be one of {', '.join(START_METHODS)}, got {worker_start_method!r}"
            )
        self.root = str(root)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.crop_samples, self.patches_per_clip = crop_samples, patches_per_clip
        self.shuffle_buffer, self.train_samples_per_epoch, self.seed = shuffle_buffer, train_samples_per_epoch, seed
        self.train_size, self.subset_seed = train_size, subset_seed
        self.worker_start_method = worker_start_method
        self.directory = ShardDirectory(self.root, shard_url)
        self._vocab = self.directory.vocab
        self.stats: dict[str, Any] = self.directory.stats
        self.train_crop: int | None = None
        self._train_keys: frozenset[str] | None = None

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

    def split_keys(self, split: str) -> list[str]:
        """Every key of ``split`` ("train", "valid", "test"), in index order. Evaluation must see all of them."""
        return self.directory.split_keys(split)

    @property
    def train_keys(self) -> frozenset[str]:
        """The keys of the clips this run trains on (all, or the ``train_size`` subset)."""
        if self._train_keys is None:
            self._train_keys = select_subset(self.split_keys("train"), self.train_size, self.subset_seed)
        return self._train_keys

    def describe(self) -> dict[str, Any]:
        """What a run's results.json records about its data."""
        splits = self.stats.get("splits", {})
        described = {
            "root": self.root,
            "sample_rate": self.sample_rate,
            "n_tags": self.n_tags,
            "clips": {split: info.get("clips") for split, info in splits.items()},
            "train_size": self.train_size if self.train_size is not None else 1.0,
            "subset_seed": self.subset_seed,
            "build": self.stats.get("arguments", {}),
        }
        try:
            described["train_clips"] = len(self.train_keys)  # the exact number trained on
            described["train_samples_per_epoch"] = self._samples_per_epoch()
        except DataError:
            pass  # no (readable) training split, e.g. test-only data: nothing to report
        return described

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
            raise DataError(
                "the training crop length is unknown: the model declares no train_crop_samples; "
                "set data.crop_samples (samples at 16 kHz)"
            )
        return int(crop)

    def _distribution(self) -> tuple[int, int]:
        """(rank, world size): the Trainer's when attached, else what the launcher's environment says."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else detect_distribution()

    def _loader_options(self, workers: int) -> dict[str, Any]:
        start_method = self.worker_start_method if workers > 0 else None
        return {
            "num_workers": workers,
            "multiprocessing_context": start_method,
            "pin_memory": torch.cuda.is_available(),
        }

    # --- training --------------------------------------------------------------------------

    def _samples_per_epoch(self) -> int:
        if self.train_samples_per_epoch is not None:
            return self.train_samples_per_epoch
        return len(self.train_keys) * self.patches_per_clip

    def train_batches_per_worker(self, world_size: int = 1) -> int:
        """Batches each DataLoader worker of each rank yields per epoch (see the module docstring)."""
        batches_per_rank = math.ceil(self._samples_per_epoch() / (self.batch_size * world_size))
        return math.ceil(batches_per_rank / max(1, self.num_workers))

    def train_dataloader(self) -> DataLoader | ResumableTrainLoader:
        """The training loader; under a Trainer, wrapped so a run resumed mid-epoch replays its batches."""
        if self.train_crop is None:
            self.setup("fit")
        rank, world_size = self._distribution()
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        keep = self.train_keys
        shards = [(url, [k for k in keys if k in keep]) for url, keys in self.directory.split_shards("train")]
        dataset = TrainPatches(
            shards,
            self._vocab,
            crop_samples=self.train_crop,
            patches_per_clip=self.patches_per_clip,
            shuffle_buffer=self.shuffle_buffer,
            batch_size=self.batch_size,
            batches_per_worker=self.train_batches_per_worker(world_size),
            workers=self.num_workers,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            epoch=epoch,
        )
        # Persistent workers keep their copy of the dataset, whose epoch counter then moves on
        # every epoch (fresh workers would start from the same epoch and repeat the same draws).
        loader = DataLoader(
            dataset, batch_size=None, persistent_workers=self.num_workers > 0, **self._loader_options(self.num_workers)
        )
        # Under a Trainer (whichever is fitting now: `lt fit`, `lt bench fit`, a user's own script),
        # the loader saves where the epoch stands in every checkpoint and skips ahead on resume.
        return ResumableTrainLoader(loader, self.trainer) if self.trainer is not None else loader

    # --- evaluation ------------------------------------------------------------------------

    def _eval_dataloader(self, split: str) -> DataLoader:
        rank, world_size = self._distribution()
        dataset = EvalClips(self.directory.split_shards(split), self._vocab, rank=rank, world_size=world_size)
        workers = min(self.num_workers, dataset.n_clips)  # a worker without clips would only cost start-up time
        # Persistent: Lightning reuses the validation loader every epoch, and restarting spawned
        # workers costs seconds each time (EvalClips holds no state between passes).
        return DataLoader(dataset, batch_size=None, persistent_workers=workers > 0, **self._loader_options(workers))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The batch on the device with its audio float32 (int16 training audio divided by 32768, exactly)."""
        if isinstance(batch, dict) and isinstance(batch.get("audio"), torch.Tensor):
            batch["audio"] = pcm16_to_float(batch["audio"])
        return batch

    def val_dataloader(self) -> DataLoader:
        return self._eval_dataloader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_dataloader("test")
