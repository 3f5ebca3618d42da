"""VGG-like baseline on log-mel spectrograms, as shipped with the ``musicnn`` package.

Pons, Nieto, Prockup, Schmidt, Ehmann & Serra, "End-to-end learning for music audio tagging
at scale", ISMIR 2018 (the computer-vision baseline); Pons & Serra, "musicnn", ISMIR 2019
LBD (``MTT_vgg``, ``MSD_vgg`` checkpoints).

TF → torch mapping: TF sees ``[batch, time, mel, ch]``, we see ``[B, C, mel, time]``, so pool
sizes are swapped ((time, mel) there, (mel, time) here) and a TF conv kernel
``[3, 3, c_in, c_out]`` (time, mel) loads as ``k.permute(3, 2, 1, 0)`` → ``[c_out, c_in, mel, time]``.
``blocks[i].conv`` ↔ TF ``{i+1}CNN``; ``input_bn`` and ``blocks[i].bn`` ↔ the
``batch_normalization_*`` variables in creation order; ``classifier`` ↔ ``dense`` (``k.T``).
The last pool output is flattened in TF order (time, mel, channel) so the dense weights line up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_tagging.errors import UserError

from .base import Backbone, check_spectrogram

BN_EPS = 1e-3  # TF's default epsilon, so imported statistics reproduce TF outputs
BN_MOMENTUM = 0.01  # TF's 0.99 moving-average decay

# Max-pool (size, stride) per block as ((mel, time), (mel, time)); all "valid" (no padding).
# In TF's (time, mel) order: pool1 size (4, 1) stride (2, 2); pool2-4 (2, 2)/(2, 2); pool5 (4, 4)/(4, 4).
POOLS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((1, 4), (2, 2)),
    ((2, 2), (2, 2)),
    ((2, 2), (2, 2)),
    ((2, 2), (2, 2)),
    ((4, 4), (4, 4)),
)


def _pooled_size(n: int, axis: int) -> int:
    """Length of axis ``axis`` (0 = mel, 1 = time) of ``n`` steps after all five valid pools."""
    for size, stride in POOLS:
        n = (n - size[axis]) // stride[axis] + 1
    return n


MIN_MELS = 63  # smallest n_mels / n_frames that survive the five valid poolings
MIN_FRAMES = 66


class _VGGBlock(nn.Module):
    """conv 3×3 "same" → ReLU → BN → max-pool → dropout."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[tuple[int, int], tuple[int, int]]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.pool = nn.MaxPool2d(kernel_size=pool[0], stride=pool[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn(F.relu(self.conv(x))))


class VGG(Backbone):
    """musicnn's VGG baseline (Pons et al., ISMIR 2018).

    Input ``[B, 1, n_mels, n_frames]`` log-mel patches → logits ``[B, n_tags]``: input BN;
    5 × [conv 3×3 "same", ReLU, BN, max-pool, dropout 0.25]; flatten (time, mel, channel);
    dropout 0.5; dense ``n_tags``. At 96 mels × 187 frames the last pool leaves
    2 time × 1 mel × ``filters``; 605,748 trainable parameters with 128 filters and 50 tags.

    Args:
        n_tags: number of output logits.
        n_mels: mel bands of the input.
        n_frames: frames of a patch (``input_length``); the dense layer depends on it.
        filters: filters of every conv layer.
    """

    input_kind = "spectrogram"

    def __init__(self, n_tags: int = 50, n_mels: int = 96, n_frames: int = 187, filters: int = 128) -> None:
        super().__init__()
        self.n_tags = n_tags
        self.n_mels = n_mels
        self.input_length = n_frames
        mel_out, time_out = _pooled_size(n_mels, 0), _pooled_size(n_frames, 1)
        if mel_out < 1 or time_out < 1:
            raise UserError(
                f"VGG's five poolings need at least {MIN_MELS} mels × {MIN_FRAMES} frames, "
                f"got {n_mels} × {n_frames}"
            )
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.blocks = nn.ModuleList(
            _VGGBlock(1 if i == 0 else filters, filters, pool) for i, pool in enumerate(POOLS)
        )
        self.block_dropout = nn.Dropout(0.25)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(time_out * mel_out * filters, n_tags)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened last-pool features ``[B, time·mel·filters]`` in TF (time, mel, channel) order."""
        check_spectrogram(x, self.n_mels, self.input_length, type(self).__name__)
        x = self.input_bn(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            # TF applies dropout 0.25 after pools 1-4; the flattened pool5 gets 0.5 instead.
            if i < len(self.blocks) - 1:
                x = self.block_dropout(x)
        return x.permute(0, 3, 2, 1).flatten(1)  # [B, C, mel, time] → [B, time, mel, C] → flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_tags]`` of spectrograms ``[B, 1, n_mels, n_frames]``."""
        return self.classifier(self.dropout(self.embed(x)))
