"""TaggingModule: front-end → backbone → BCE loss, with song-level evaluation.

A thin LightningModule. The front-end and the backbone are plain ``nn.Module`` s
injected from the config (LightningCLI subclass mode), so any pair is chosen in YAML:

    model:
      frontend: {class_path: lightning_tagging.frontends.LogMel, init_args: {compression: log_learn}}
      backbone: {class_path: lightning_tagging.models.Musicnn, init_args: {width: 0.25}}

Training sees random patches of ``train_crop_samples`` samples (the data module asks
for this number). Validation and test are song-level (see ``patching.py``): whole
clips in, the mean of patch sigmoids out, then macro ROC-AUC / PR-AUC over tags.

Audio may arrive as int16 (training batches from 16-bit shards, half the bytes to copy to the
device); :func:`pcm16_to_float` turns it into the float32 that decoding to float would have
given, exactly, before the front-end sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters
from pytorch_lightning.utilities import rank_zero_warn

from lightning_tagging.compiling import check_compile_mode, compile_callable
from lightning_tagging.data.audio import SAMPLE_RATE, pcm16_to_float
from lightning_tagging.errors import UserError
from lightning_tagging.frontends import Frontend
from lightning_tagging.metrics import song_level_metrics
from lightning_tagging.models.base import Backbone
from lightning_tagging.patching import cut_into_patches, pad_clip


class TaggingModule(pl.LightningModule):
    """Trains and evaluates one front-end + backbone pair.

    Args:
        frontend: maps ``[B, samples]`` audio to the backbone's input.
        backbone: maps one patch of front-end output to ``[B, n_tags]`` logits.
        tags: the tag vocabulary, in logit order (linked from the data's ``vocab.json``
            by the CLI and stored in checkpoints, so a checkpoint knows what it predicts).
        optimizer: optimizer factory (Adam, lr 1e-3 by default).
        eval_patches_per_forward: patches of one clip sent through the backbone at once
            during evaluation; bounds memory for long clips.
        init_from: a checkpoint whose weights start this model (fine-tuning, e.g. from
            `lt weights import musicnn`); loaded strictly, its tags must equal ``tags``.
            Unlike ``--ckpt_path`` it restores weights only, not optimizer or step.
        compile: run the training forward (front-end + backbone; its backward follows)
            through ``torch.compile``, which compiles on the first training step. Weights,
            checkpoints and the function computed are unchanged; evaluation stays eager (whole
            clips vary in length, and would each compile anew).
        compile_mode: torch.compile's mode (``compiling.COMPILE_MODES``): ``default``, or
            ``reduce-overhead`` (CUDA graphs), or ``max-autotune`` (minutes of tuning).
        compile_backend: torch.compile's backend: ``inductor`` (generates kernels), or
            ``aot_eager`` / ``eager`` to check that a model traces, without code generation.
    """

    def __init__(
        self,
        frontend: Frontend,
        backbone: Backbone,
        tags: list[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        eval_patches_per_forward: int = 64,
        init_from: str | None = None,
        compile: bool = False,  # the config key users write (model.compile), though it shadows a builtin
        compile_mode: str = "default",
        compile_backend: str = "inductor",
    ) -> None:
        super().__init__()
        check_compatible(frontend, backbone)
        check_compile_mode(compile_mode)  # at construction: a config error, not one at the first step
        if tags is not None and len(tags) != backbone.n_tags:
            raise UserError(
                f"the backbone has {backbone.n_tags} outputs but the vocabulary has {len(tags)} tags; "
                "set the backbone's n_tags to match (the CLI links it from the data)"
            )
        # Under LightningCLI the hparams are the config (class_path + init_args of the front-end,
        # backbone and optimizer), which is what load_from_checkpoint needs to rebuild the model.
        # Built directly from Python, those arguments are live objects: keep them out of the
        # checkpoint (they would be pickled) — such checkpoints load with explicit modules.
        built_by_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if built_by_cli else ["frontend", "backbone", "optimizer"])
        self.frontend = frontend
        self.backbone = backbone
        self.tags = list(tags) if tags is not None else [f"tag_{i}" for i in range(backbone.n_tags)]
        self.optimizer_factory = optimizer
        self.eval_patches_per_forward = eval_patches_per_forward
        self.compile_mode = compile_mode if compile else None  # None: eager
        self.compile_backend = compile_backend
        self._compiled_forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # built on first use
        self._eval_probs: list[torch.Tensor] = []
        self._eval_targets: list[torch.Tensor] = []
        self._eval_keys: list[str | None] = []
        self._train_skipped = torch.zeros((), dtype=torch.int64)  # corrupt training samples this epoch, this rank
        self.train_skipped_total = 0  # over all ranks and the finished epochs (carried by checkpoints)
        self.test_results: dict[str, Any] | None = None
        if init_from is not None:
            self.load_weights(init_from)

    def load_weights(self, path: str) -> None:
        """Load front-end + backbone weights from a checkpoint, strictly (same shapes, same tags)."""
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as error:
            raise UserError(f"init_from: no checkpoint at {path}") from error
        self.on_load_checkpoint(checkpoint)
        try:
            self.load_state_dict(checkpoint["state_dict"], strict=True)
        except RuntimeError as error:
            raise UserError(f"init_from: {path} does not fit this model (same backbone and width?): {error}") from error

    def setup(self, stage: str) -> None:
        # Shards hold 16 kHz audio (data/audio.py resamples everything on the way in).
        data_rate = getattr(self.trainer.datamodule, "sample_rate", SAMPLE_RATE)
        if data_rate != self.frontend.sample_rate:
            raise UserError(f"the data is at {data_rate} Hz but the front-end expects sample rate "
                            f"{self.frontend.sample_rate} Hz; set model.frontend.init_args.sample_rate={data_rate}")

    # --- what the data side asks -------------------------------------------------------

    @property
    def train_crop_samples(self) -> int:
        """Samples of audio in one training patch (what the backbone wants, through the front-end)."""
        return self.frontend.n_samples_for(self.backbone.input_length)

    # --- forward ------------------------------------------------------------------------

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_tags]`` of a batch of patch-sized clips ``[B, train_crop_samples]`` (float, or int16 PCM)."""
        return self.backbone(self.frontend(pcm16_to_float(audio)))

    def training_forward(self, audio: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`, compiled on the first call when the module was built with ``compile``."""
        if self.compile_mode is None:
            return self(audio)
        if self._compiled_forward is None:
            self._compiled_forward = compile_callable(self.forward, self.device.type, self.compile_mode,
                                                      self.compile_backend)
        # CUDA graphs (reduce-overhead) reuse their output buffers: a new step may overwrite the last one's.
        torch.compiler.cudagraph_mark_step_begin()
        return self._compiled_forward(audio)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_compiled_forward"] = None  # compiled code is per process: a copy compiles its own
        return state

    @torch.no_grad()
    def clip_probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """Song-level tag probabilities ``[n_tags]`` of one whole clip ``[samples]`` (float, or int16 PCM).

        The front-end sees the whole clip; its output is cut into non-overlapping
        backbone-sized patches (leftover dropped, a clip shorter than one patch is
        zero-padded first) and the patches' sigmoids are averaged.
        """
        audio = pad_clip(pcm16_to_float(audio).reshape(1, -1), self.train_crop_samples)
        features = self.frontend(audio)[0]
        patches = cut_into_patches(features, self.backbone.input_length)
        probs = [torch.sigmoid(self.backbone(chunk).float()) for chunk in patches.split(self.eval_patches_per_forward)]
        return torch.cat(probs).mean(dim=0)

    # --- training -------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.training_forward(batch["audio"])
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["tags"])
        if "skipped" in batch:  # summed as a tensor: no device sync per step
            self._train_skipped = self._train_skipped.to(batch["skipped"].device) + batch["skipped"].sum()
        # Per-step values stay tensors on the device, and off Lightning's prog_bar: Lightning turns every
        # prog_bar value into a Python number after every batch (a host sync, bar or no bar). `progress.py`'s
        # bar shows them, read at most once a second.
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(logits))
        for name, value in self.frontend.logged_values().items():
            self.log(f"frontend/{name}", value, on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_end(self) -> None:
        local = self._train_skipped.to(self.device).float()
        skipped = int(self.trainer.strategy.reduce(local, reduce_op="sum").item())
        self._train_skipped = torch.zeros_like(self._train_skipped)
        self.train_skipped_total += skipped
        self.log("data/train_skipped", float(skipped), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    # --- song-level evaluation ------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._reset_eval()

    def on_test_epoch_start(self) -> None:
        self._reset_eval()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        results = self._eval_results("valid")
        self.log_dict({"val/roc_auc": results["roc_auc"], "val/pr_auc": results["pr_auc"]}, prog_bar=True)
        if "n_skipped" in results:
            self.log("val/skipped", float(results["n_skipped"]))

    def on_test_epoch_end(self) -> None:
        results = self._eval_results("test")
        self.log_dict({"test/roc_auc": results["roc_auc"], "test/pr_auc": results["pr_auc"]})
        if "n_skipped" in results:
            self.log("test/skipped", float(results["n_skipped"]))
        results["train_skipped"] = self.train_skipped_total
        results["frontend"] = {name: float(value) for name, value in self.frontend.logged_values().items()}
        self.test_results = results

    def _reset_eval(self) -> None:
        self._eval_probs, self._eval_targets, self._eval_keys = [], [], []

    def _eval_step(self, batch: dict[str, Any]) -> None:
        keys = batch.get("key") or [None] * len(batch["audio"])  # an empty batch: a rank without clips
        for audio, target, key in zip(batch["audio"], batch["tags"], keys, strict=True):
            self._eval_probs.append(self.clip_probabilities(audio))
            self._eval_targets.append(target.float())
            self._eval_keys.append(key)

    def _eval_results(self, split: str) -> dict[str, Any]:
        """Metrics over the union of all ranks' clips, each clip once; skipped clips counted."""
        n_tags = len(self.tags)
        probs = torch.stack(self._eval_probs) if self._eval_probs else torch.zeros(0, n_tags, device=self.device)
        targets = torch.stack(self._eval_targets) if self._eval_targets else torch.zeros(0, n_tags, device=self.device)
        probs, targets, keys = self._gather_rows(probs), self._gather_rows(targets), self._gather_keys()
        self._reset_eval()
        unique = unique_rows(keys)
        if len(unique) < len(keys):
            rank_zero_warn(f"{len(keys) - len(unique)} {split} clips were evaluated twice; each counts once")
            probs, targets, keys = probs[unique], targets[unique], [keys[i] for i in unique]
        results = song_level_metrics(probs, targets, self.tags)
        results.update(self._skipped_clips(split, keys))
        return results

    def _skipped_clips(self, split: str, evaluated: list[str | None]) -> dict[str, Any]:
        """``n_clips_expected``, ``n_skipped`` and ``skipped_keys`` (≤ 100), when the data says what to expect."""
        trainer = self.trainer
        limit = trainer.limit_val_batches if split == "valid" else trainer.limit_test_batches
        split_keys = getattr(trainer.datamodule, "split_keys", None)
        if split_keys is None or trainer.fast_dev_run or limit != 1.0:
            return {}  # a partial evaluation, or data that does not list its clips: nothing to compare
        missing = sorted(set(split_keys(split)) - set(evaluated))
        return {"n_clips_expected": len(evaluated) + len(missing), "n_skipped": len(missing),
                "skipped_keys": missing[:100]}

    def _gather_keys(self) -> list[str | None]:
        """All ranks' clip keys, in the order of :meth:`_gather_rows`."""
        if self.trainer.world_size == 1:
            return list(self._eval_keys)
        gathered: list[list[str | None]] = [[] for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather_object(gathered, self._eval_keys)
        return [key for keys in gathered for key in keys]

    def _gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate ``[n_i, D]`` tensors from all ranks, where each rank's ``n_i`` may differ."""
        if self.trainer.world_size == 1:
            return rows
        counts = self.all_gather(torch.tensor([rows.shape[0]], device=rows.device)).flatten()
        padded = F.pad(rows, (0, 0, 0, int(counts.max()) - rows.shape[0]))
        gathered = self.all_gather(padded)  # [world, max_n, D]
        return torch.cat([gathered[rank, :count] for rank, count in enumerate(counts.tolist())])

    # --- vocabulary safety ------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tags"] = self.tags
        if self._trainer is not None and self.trainer.state.fn == "fit":
            # Corrupt training samples counted so far, so a resumed run reports the whole run's count
            # (resume.py replays the epoch's first batches without training on them, so they are not
            # counted twice). Every rank saves a checkpoint together (Trainer.save_checkpoint ends in a
            # barrier), so this sum is one more collective at the same point on every rank.
            local = self._train_skipped.to(self.device).float()
            this_epoch = int(self.trainer.strategy.reduce(local, reduce_op="sum").item())
            checkpoint["train_skipped"] = {"finished_epochs": self.train_skipped_total, "this_epoch": this_epoch}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        counts = checkpoint.get("train_skipped")
        if counts is not None and self._trainer is not None and self.trainer.state.fn == "fit":
            # Resuming this run's training (not fine-tuning from it, not testing it): continue its counts.
            # Every rank restores the same sum, so only rank zero carries this epoch's part into the next sum.
            self.train_skipped_total = int(counts["finished_epochs"])
            this_epoch = int(counts["this_epoch"]) if self.trainer.global_rank == 0 else 0
            self._train_skipped = torch.tensor(this_epoch, dtype=torch.int64)
        saved = checkpoint.get("tags")
        if saved is not None and saved != self.tags:
            raise UserError(
                "the checkpoint was trained on a different tag vocabulary than this run's data "
                f"({len(saved)} vs {len(self.tags)} tags, first difference at "
                f"{first_difference(saved, self.tags)}); evaluate it on data built with its vocabulary"
            )


def check_compatible(frontend: Frontend, backbone: Backbone) -> None:
    """Raise a `UserError` when the front-end's output is not what the backbone takes."""
    if frontend.output_kind != backbone.input_kind:
        raise UserError(
            f"{type(backbone).__name__} takes {backbone.input_kind} input but "
            f"{type(frontend).__name__} produces {frontend.output_kind}; pair waveform backbones "
            "(SampleCNN) with Waveform and spectrogram backbones (Musicnn, VGG) with LogMel"
        )
    frontend_mels, backbone_mels = getattr(frontend, "n_mels", None), getattr(backbone, "n_mels", None)
    if frontend_mels is not None and backbone_mels is not None and frontend_mels != backbone_mels:
        raise UserError(
            f"{type(frontend).__name__} makes {frontend_mels} mel bands but "
            f"{type(backbone).__name__} expects {backbone_mels}; set both n_mels to the same value"
        )


def unique_rows(keys: list[str | None]) -> list[int]:
    """Indices of the first occurrence of each key (rows without a key are all kept)."""
    seen: set[str] = set()
    rows = []
    for i, key in enumerate(keys):
        if key is None or key not in seen:
            rows.append(i)
            if key is not None:
                seen.add(key)
    return rows


def first_difference(a: list[str], b: list[str]) -> str:
    """Describe where two tag lists first differ, for error messages."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"position {i}: {x!r} vs {y!r}"
    return f"position {min(len(a), len(b))} (one list is longer)"
