"""SampleCNN: a sample-level CNN on raw waveforms.

Lee, Park, Kim & Nam, "Sample-level Deep Convolutional Neural Networks for Music
Auto-tagging Using Raw Waveforms", SMC 2017 — the 3^9 model: 59049 samples (3.69 s at
16 kHz) are reduced by a factor 3 at every layer down to a single step.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, as_waveform

# Output channels of the nine conv(3) + max-pool(3) blocks after the strided first layer.
BLOCK_CHANNELS: tuple[int, ...] = (128, 128, 256, 256, 256, 256, 256, 256, 512)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class SampleCNN(Backbone):
    """Lee et al. (SMC 2017) 3^9 SampleCNN.

    Input ``[B, 59049]`` (or ``[B, 1, 59049]``) waveform samples → logits ``[B, n_tags]``.

    Layers (length after each in brackets): strided conv(128, k3, s3)+BN+ReLU [19683];
    nine × [conv(k3, pad 1)+BN+ReLU, max-pool 3] with 128,128,256,256,256,256,256,256,512
    filters [6561 … 1]; conv(512, k1)+BN+ReLU [1] (= :meth:`embed`, 512 features);
    dropout; linear → ``n_tags``. 1,869,874 trainable parameters at 50 tags.

    Args:
        n_tags: number of output logits.
        dropout: dropout probability before the classifier.
    """

    input_kind = "waveform"

    def __init__(self, n_tags: int = 50, dropout: float = 0.5) -> None:
        super().__init__()
        self.n_tags = n_tags
        self.input_length = 3 ** (len(BLOCK_CHANNELS) + 1)  # 59049
        self.stem = _conv_bn_relu(1, BLOCK_CHANNELS[0], kernel=3, stride=3)
        blocks = []
        c_in = BLOCK_CHANNELS[0]
        for c_out in BLOCK_CHANNELS:
            blocks.append(nn.Sequential(_conv_bn_relu(c_in, c_out, kernel=3, padding=1), nn.MaxPool1d(3)))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn_relu(c_in, 512, kernel=1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(512, n_tags)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """512 features ``[B, 512]`` after the 1×1 conv of waveforms ``[B, 59049]``."""
        x = as_waveform(x, self.input_length, type(self).__name__)
        x = self.head(self.blocks(self.stem(x)))  # [B, 512, 1]
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_tags]`` of waveforms ``[B, 59049]``."""
        return self.classifier(self.dropout(self.embed(x)))
