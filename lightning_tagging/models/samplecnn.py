"""SampleCNN: a sample-level CNN on raw waveforms.

Lee, Park, Kim & Nam, "Sample-level Deep Convolutional Neural Networks for Music
Auto-tagging Using Raw Waveforms", SMC 2017 — the 3^9 model: 59049 samples (3.69 s at
16 kHz) are reduced by a factor 3 at every layer down to a single step.

Each block's BatchNorm → ReLU → max-pool can run with the pool first (``block_impl="pool_first"``,
``models/pool_first_bn.py``): the same function and weights, normalising 3× fewer values. Or every
layer can keep its activations channels-last (``block_impl="nhwc"``, ``models/samplecnn_nhwc.py``),
the layout cuDNN's bf16 convs want, so that nothing is transposed around them; or both
(``"pool_first_nhwc"``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lightning_tagging.errors import UserError

from . import samplecnn_nhwc
from .base import Backbone, as_waveform
from .pool_first_bn import conv_maxpool_relu_bn

# Output channels of the nine conv(3) + max-pool(3) blocks after the strided first layer.
BLOCK_CHANNELS: tuple[int, ...] = (128, 128, 256, 256, 256, 256, 256, 256, 512)

# How a block runs its conv → BN → ReLU → max-pool: module by module, or with the pool before
# the normalisation (models/pool_first_bn.py), or either in channels-last memory, the stem and
# head too (models/samplecnn_nhwc.py). Same function, same parameters and buffers.
# "auto": the fastest where measured, by the device of each batch (:func:`auto_block_impl`).
BLOCK_IMPLS = ("plain", "pool_first", "nhwc", "pool_first_nhwc", "auto")


def auto_block_impl(device: torch.device) -> str:
    """What ``block_impl="auto"`` runs on ``device``: ``"nhwc"`` on CUDA GPUs, else ``"plain"``.

    Training clips/s on an H200 (2026-11-26, ``lt bench model``; docs/performance.md), plain → nhwc:
    batch 256 fp32 2,793 → 4,598, bf16-mixed 3,095 → 6,335; batch 16 fp32 1,898 → 2,398, bf16-mixed
    1,476 → 2,248; pool_first and pool_first_nhwc were slower than nhwc in all four. On this
    project's 2-core CPU, training ran 1.1–2.4× slower in nhwc than plain (docs/performance.md).
    """
    return "nhwc" if device.type == "cuda" else "plain"


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class _Block(nn.Sequential):
    """conv(k3, pad 1) → BN → ReLU, then max-pool 3: ``[B, c_in, T]`` → ``[B, c_out, T // 3]``.

    A ``Sequential`` of the same modules as always (so the same state_dict keys), whose forward
    can skip the full-length BN and ReLU outputs (``impl="pool_first"``).
    """

    def __init__(self, c_in: int, c_out: int, impl: str) -> None:
        super().__init__(_conv_bn_relu(c_in, c_out, kernel=3, padding=1), nn.MaxPool1d(3))
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "plain":
            return super().forward(x)
        conv, bn, _ = self[0]

        def convolve(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            return F.conv1d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

        return conv_maxpool_relu_bn(convolve, conv, bn, pool=self[1].kernel_size)


class SampleCNN(Backbone):
    """Lee et al. (SMC 2017) 3^9 SampleCNN.

    Input ``[B, 59049]`` (or ``[B, 1, 59049]``) waveform samples → logits ``[B, n_tags]``.

    Layers (length after each in brackets): strided conv(128, k3, s3)+BN+ReLU [19683];
    nine × [conv(k3, pad 1)+BN+ReLU, max-pool 3] with 128,128,256,256,256,256,256,256,512
    filters [6561 … 1]; conv(512, k1)+BN+ReLU [1] (= :meth:`embed`, 512 features);
    dropout; linear → ``n_tags``. 1,869,874 trainable parameters at 50 tags (either ``block_impl``).

    Args:
        n_tags: number of output logits.
        dropout: dropout probability before the classifier.
        block_impl: how the nine blocks run; same weights, same function: ``"plain"`` (the
            modules in order), ``"pool_first"`` (max-pool the conv output, then normalise and
            rectify 3× fewer values; ``models/pool_first_bn.py``), ``"nhwc"`` (the modules in
            order, every layer's activations ``[B, C, 1, T]`` in channels-last memory, as cuDNN's
            bf16 convs want them; ``models/samplecnn_nhwc.py``), ``"pool_first_nhwc"`` (both), or
            ``"auto"``: :func:`auto_block_impl`'s choice for the device of each batch.
    """

    input_kind = "waveform"
    # The benchmarks' baseline: the modules in order, as a plain PyTorch port runs them.
    plain_args: ClassVar[dict[str, object]] = {"block_impl": "plain"}

    def __init__(self, n_tags: int = 50, dropout: float = 0.5, block_impl: str = "auto") -> None:
        super().__init__()
        self.n_tags = n_tags
        self.input_length = 3 ** (len(BLOCK_CHANNELS) + 1)  # 59049
        self.stem = _conv_bn_relu(1, BLOCK_CHANNELS[0], kernel=3, stride=3)
        blocks = []
        c_in = BLOCK_CHANNELS[0]
        for c_out in BLOCK_CHANNELS:
            blocks.append(_Block(c_in, c_out, block_impl))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn_relu(c_in, 512, kernel=1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(512, n_tags)
        self.use_block_impl(block_impl)

    def use_block_impl(self, block_impl: str) -> None:
        """Switch how the blocks run (see ``block_impl``); weights and function are unchanged."""
        if block_impl not in BLOCK_IMPLS:
            raise UserError(f"unknown samplecnn block_impl {block_impl!r}; choose one of {BLOCK_IMPLS}")
        self.block_impl = block_impl
        for block in self.blocks:  # (the NHWC implementations run the whole network themselves: embed)
            block.impl = "pool_first" if block_impl == "pool_first" else "plain"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """512 features ``[B, 512]`` after the 1×1 conv of waveforms ``[B, 59049]``."""
        x = as_waveform(x, self.input_length, type(self).__name__)
        block_impl = auto_block_impl(x.device) if self.block_impl == "auto" else self.block_impl
        if block_impl in ("nhwc", "pool_first_nhwc"):
            pool_first = block_impl == "pool_first_nhwc"
            return samplecnn_nhwc.embed(self.stem, self.blocks, self.head, x, pool_first)
        x = self.head(self.blocks(self.stem(x)))  # [B, 512, 1]
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_tags]`` of waveforms ``[B, 59049]``."""
        return self.classifier(self.dropout(self.embed(x)))
