"""What a W&B run shows beyond its curves: a per-tag test table, spectrograms and taggrams.

Scalars (losses, validation and test ROC-AUC / PR-AUC, log_learn's α and β) are logged by
`TaggingModule` through ``self.log``; this callback adds, when the run logs to W&B:

- ``test/per_tag``: one row per tag (ROC-AUC, PR-AUC, positive test clips);
- ``test/spectrogram`` and ``test/taggram``: the front-end output and the per-patch tag
  probabilities of the first ``n_clips`` test clips, as images (also kept as PNGs in
  ``<run dir>/media/``).

Only rank zero draws or logs: the W&B logger is rank-zero-only, and the pictures come from
rank zero's own first test clips.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from lightning_tagging.patching import cut_into_patches, pad_clip
from lightning_tagging.taggram import save_taggram


def wandb_logger_of(trainer: pl.Trainer) -> WandbLogger | None:
    """The trainer's W&B logger, if it has one."""
    return next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)


def save_spectrogram(spectrogram: np.ndarray, hop_seconds: float, path: Path, title: str = "") -> Path:
    """Write a PNG of ``spectrogram`` ``[n_mels, n_frames]`` (already compressed; low bands at the bottom)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 3.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(
        spectrogram,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap="magma",
        extent=(0.0, spectrogram.shape[1] * hop_seconds, 0, spectrogram.shape[0]),
    )
    axes.set_xlabel("time (s)")
    axes.set_ylabel("mel band")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.03, pad=0.02)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


class WandbMedia(Callback):
    """Per-tag test table and a few spectrogram / taggram images, logged to W&B at the end of testing."""

    def __init__(self, n_clips: int = 2) -> None:
        self.n_clips = n_clips
        self._images: dict[str, list[Path]] = {}

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._images = {"test/spectrogram": [], "test/taggram": []}

    @rank_zero_only
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if wandb_logger_of(trainer) is None or batch_idx >= self.n_clips:
            return
        key = batch["key"][0] if "key" in batch else f"clip{batch_idx}"
        folder = Path(trainer.default_root_dir) / "media"
        spectrogram, taggram = self._draw_inputs(pl_module, batch["audio"][0])
        rate = pl_module.frontend.sample_rate
        if spectrogram is not None:
            hop = getattr(pl_module.frontend, "hop_length", 1) / rate
            self._images["test/spectrogram"].append(
                save_spectrogram(spectrogram, hop, folder / f"spectrogram_{batch_idx}.png", title=str(key))
            )
        patch_seconds = pl_module.train_crop_samples / rate
        self._images["test/taggram"].append(
            save_taggram(
                taggram, list(pl_module.tags), patch_seconds, folder / f"taggram_{batch_idx}.png", title=str(key)
            )
        )

    @staticmethod
    @torch.no_grad()
    def _draw_inputs(pl_module: pl.LightningModule, audio: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray]:
        """(front-end output ``[n_mels, n_frames]`` or None for waveforms, taggram ``[n_patches, n_tags]``)."""
        audio = pad_clip(audio.reshape(1, -1), pl_module.train_crop_samples)
        features = pl_module.frontend(audio)[0]
        patches = cut_into_patches(features, pl_module.backbone.input_length)
        taggram = torch.sigmoid(pl_module.backbone(patches).float()).cpu().numpy()
        spectrogram = features.reshape(-1, features.shape[-1]).float().cpu().numpy() if features.dim() > 1 else None
        return spectrogram, taggram

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = wandb_logger_of(trainer)
        results = getattr(pl_module, "test_results", None)
        if logger is None or results is None:
            return
        rows = [
            [tag, _number(v["roc_auc"]), _number(v["pr_auc"]), v["n_positive"]] for tag, v in results["per_tag"].items()
        ]
        logger.log_table("test/per_tag", columns=["tag", "roc_auc", "pr_auc", "n_positive"], data=rows)
        for key, paths in self._images.items():
            if paths:
                logger.log_image(key, [str(p) for p in paths], caption=[p.stem for p in paths])


def _number(value: float) -> float | None:
    """NaN (a tag without positives) as an empty cell: W&B tables chart None, not NaN."""
    return None if math.isnan(value) else value
