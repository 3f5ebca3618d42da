"""sampleCNN's layers in channels-last (NHWC) memory: ``SampleCNN(block_impl="nhwc")``.

sampleCNN's convs are 1-D, on ``[B, C, T]`` tensors whose time steps are adjacent in memory
(NCL). cuDNN runs a Conv1d as a 2-D conv of ``[B, C, 1, T]``, and its fast bf16 kernels want
the channels innermost (NHWC): PyTorch transposes each conv's input, output and weight to that
layout and back, forward and backward. On an H100 these copies took 16 % of a bf16 training step
(docs/performance.md, "Where the GPU time went on the H100").

Here the whole network keeps its activations as ``[B, C, 1, T]`` tensors in channels-last memory,
so nothing is transposed. Every layer takes and gives that layout:
- each Conv1d runs as a 2-D conv with its weight viewed ``[out, in, 1, k]``; the stem (one input
  channel, stride = kernel) as a matrix product of the waveform's windows and the weight;
- each BatchNorm1d runs as a 2-D one, with the same parameters and buffers (:func:`batch_norm`);
- the max-pools are 1 × 3; or, with ``block_impl="pool_first_nhwc"``, each block pools before its
  BatchNorm and ReLU (``pool_first_bn.py``, which keeps the layout).

The modules, parameters and buffers are those of the plain network, so a checkpoint loads into
either. The operations are the same, in another memory order, so only summation order may differ
(``tests/test_samplecnn_nhwc.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pool_first_bn import conv_maxpool_relu_bn


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` → ``[B, C, 1, T]`` with channels innermost in memory (a copy unless C = 1)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def conv(layer: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for ``x`` ``[B, C_in, 1, T]`` channels-last → ``[B, C_out, 1, T']`` channels-last."""
    return conv_with(layer, x, layer.weight, layer.bias)


def conv_with(layer: nn.Conv1d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """:func:`conv` with ``layer``'s weight ``[out, in, k]`` and bias ``[out]`` replaced by these."""
    (kernel,), (stride,), (padding,), (dilation,) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    if layer.in_channels == 1 and stride == kernel and padding == 0 and dilation == 1:
        # One channel in non-overlapping windows (the stem): a matrix product of the windows
        # [B, T', k] and the weight, whose [B, T', C_out] output is channels-last already. A conv
        # here would see both layouts in a one-channel input and weight, and answer in NCHW.
        batch, samples = x.shape[0], x.shape[-1]
        frames = samples // kernel
        windows = x.reshape(batch, samples)[:, : frames * kernel].view(batch, frames, kernel)
        out = F.linear(windows, weight.view(layer.out_channels, kernel), bias)
        return out.transpose(1, 2).unsqueeze(2)  # [B, C_out, 1, T'] over the same memory
    weight = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # [out, in, 1, k], small
    return F.conv2d(x, weight, bias, stride=(1, layer.stride[0]), padding=(0, layer.padding[0]),
                    dilation=(1, layer.dilation[0]), groups=layer.groups)


def batch_norm(layer: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for ``x`` ``[B, C, 1, T]`` (BatchNorm1d itself accepts only 2-D and 3-D inputs).

    The same statistics (over batch and time), running-buffer update and evaluation behaviour as
    the module's own forward. Momentum None (a cumulative average) reads the batch count on the
    host, as the module does; sampleCNN's BatchNorms have momentum 0.1.
    """
    momentum = 0.0 if layer.momentum is None else layer.momentum
    if layer.training and layer.track_running_stats and layer.num_batches_tracked is not None:
        layer.num_batches_tracked.add_(1)
        if layer.momentum is None:
            momentum = 1.0 / float(layer.num_batches_tracked)
    batch_statistics = layer.training or (layer.running_mean is None and layer.running_var is None)
    # Training without tracked statistics passes no buffers: F.batch_norm would update them.
    keep_buffers = not layer.training or layer.track_running_stats
    return F.batch_norm(x, layer.running_mean if keep_buffers else None, layer.running_var if keep_buffers else None,
                        layer.weight, layer.bias, batch_statistics, momentum, layer.eps)


def conv_bn_relu(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A (Conv1d, BatchNorm1d, ReLU) sequence on channels-last ``[B, C, 1, T]`` tensors."""
    convolution, normalization, _ = layers
    return F.relu_(batch_norm(normalization, conv(convolution, x)))


def block(layers: nn.Sequential, x: torch.Tensor, pool_first: bool = False) -> torch.Tensor:
    """A sampleCNN block (conv → BN → ReLU, then max-pool) on channels-last ``[B, C, 1, T]`` tensors;
    ``pool_first``: the pool before BN and ReLU (``pool_first_bn.py``)."""
    (convolution, normalization, _), pool = layers
    if pool_first:
        return conv_maxpool_relu_bn(lambda weight, bias: conv_with(convolution, x, weight, bias), convolution,
                                    normalization, pool=pool.kernel_size)
    return F.max_pool2d(conv_bn_relu(layers[0], x), (1, pool.kernel_size))


def embed(stem: nn.Sequential, blocks: nn.Sequential, head: nn.Sequential, waveform: torch.Tensor,
          pool_first: bool = False) -> torch.Tensor:
    """SampleCNN's features ``[B, 512]`` of ``waveform`` ``[B, 1, samples]``, every layer channels-last."""
    x = conv_bn_relu(stem, to_nhwc(waveform))
    for layers in blocks:
        x = block(layers, x, pool_first)
    return conv_bn_relu(head, x).flatten(1)  # [B, 512, 1, 1] → [B, 512]
