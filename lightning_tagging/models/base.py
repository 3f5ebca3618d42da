"""The contract every backbone keeps.

A backbone maps one front-end output patch to tag logits. It declares what it wants so
that nobody else hard-codes it: the data side asks the model for the training crop
length, and song-level evaluation cuts the front-end output into patches of
``input_length`` time steps.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from lightning_tagging.errors import UserError

InputKind = Literal["waveform", "spectrogram"]


class Backbone(nn.Module):
    """Base class of all backbones.

    Attributes:
        input_kind: ``"waveform"`` (input ``[B, samples]``) or ``"spectrogram"``
            (input ``[B, 1, n_mels, n_frames]``). Used to reject invalid
            front-end × backbone pairs with a clear message.
        input_length: time steps of one patch along the input's last axis
            (samples for waveform backbones, frames for spectrogram ones).
        n_tags: number of output logits.
        plain_args: constructor arguments that select the straightforward formulation, where a
            backbone has faster ones of the same function (the benchmarks' baseline).
    """

    input_kind: ClassVar[InputKind]
    plain_args: ClassVar[dict[str, object]] = {}
    input_length: int
    n_tags: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map a batch of patches to logits ``[B, n_tags]``."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Penultimate-layer features ``[B, D]`` of a batch of patches."""
        raise NotImplementedError


def check_spectrogram(x: torch.Tensor, n_mels: int, n_frames: int | None, model: str) -> None:
    """Raise a clear ValueError unless ``x`` is ``[B, 1, n_mels, n_frames]`` (any n_frames if None)."""
    ok = x.ndim == 4 and x.shape[1] == 1 and x.shape[2] == n_mels
    if ok and n_frames is not None:
        ok = x.shape[3] == n_frames
    if not ok:
        frames = "n_frames" if n_frames is None else str(n_frames)
        raise UserError(
            f"{model} expects spectrograms of shape [B, 1, {n_mels}, {frames}] (mel bands, then frames), "
            f"got {tuple(x.shape)}; check the front-end's n_mels and the patch length"
        )


def as_waveform(x: torch.Tensor, n_samples: int, model: str) -> torch.Tensor:
    """Return ``x`` as ``[B, 1, n_samples]``; accepts ``[B, n_samples]`` or ``[B, 1, n_samples]``."""
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3 or x.shape[1] != 1 or x.shape[2] != n_samples:
        raise UserError(
            f"{model} expects waveforms of shape [B, {n_samples}] or [B, 1, {n_samples}], "
            f"got {tuple(x.shape)}; crop or pad patches to the backbone's input_length"
        )
    return x
