"""2-D convolution of a one-channel spectrogram, in two interchangeable implementations.

musicnn's front-end convolves the (one-channel) log-mel spectrogram with tall kernels
(e.g. 38 mel × 7 frames). Library conv kernels handle one input channel poorly: on CPU
(oneDNN) the backward pass of such a conv runs at a few GFLOP/s. Sliding the kernel over
mel positions is the same as stacking every mel window as a separate 1-D signal whose
channels are the window's bands, then running an ordinary 1-D conv over time:

    x [B, 1, F, T]  →  windows [B·F', kh, T]  →  conv1d(kh → filters, kw)  →  [B, filters, F', T]

with ``F' = F - kh + 1``. Same weights, same arithmetic (no redundant FLOPs), and a conv1d
with ``kh`` input channels runs several times faster on CPU.

``mel_band`` goes the other way: every mel band is an input channel of one conv1d over time,
and each (filter, window position) pair is an output channel whose weight is the kernel placed
on that window's bands and zero elsewhere (a banded weight ``[C·F', F, kw]``):

    x [B, 1, F, T]  →  x [B, F, T]  →  conv1d(F → C·F', kw)  →  [B, C·F', T']  =  [B, C, F', T']

Nothing is copied on either side (the output reshape is a view) and the conv is an ordinary
many-channel one, which GPU libraries run on tensor cores; the price is ``F / kh`` times the
multiply-adds (×2.5 and ×1.4 for musicnn's timbral kernels). A kernel one band tall would pay
×F, so it runs as ``mel_windows`` (a view there). All paths compute the same function up to
float rounding; tests check outputs and gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_tagging.errors import UserError

IMPLEMENTATIONS = ("conv2d", "mel_windows", "mel_band", "auto")


def single_channel_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, impl: str) -> torch.Tensor:
    """Valid (unpadded) 2-D convolution of ``x`` ``[B, 1, F, T]`` with ``weight`` ``[C, 1, kh, kw]``.

    Returns ``[B, C, F - kh + 1, T - kw + 1]``. ``impl``: ``"conv2d"`` (library conv),
    ``"mel_windows"`` (1-D conv over stacked mel windows), or ``"auto"``, :func:`auto_impl`'s choice.
    """
    if impl == "auto":
        impl = auto_impl(x.device, tall=weight.shape[2] > 1, training=torch.is_grad_enabled())
    if impl == "conv2d":
        return F.conv2d(x, weight, bias)
    formulations = {"mel_windows": _mel_windows_conv, "mel_band": _mel_band_conv}
    if impl not in formulations:
        raise UserError(f"unknown conv implementation {impl!r}; choose one of {IMPLEMENTATIONS}")
    conv = formulations[impl]
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # CPU autocast would run this conv1d in bf16, which is emulated (slower than fp32 here) and
        # sums the weight gradient over B·F' windows with 5× the error of the library conv2d in bf16
        # (tests/test_single_channel_conv.py). fp32 inside, autocast's dtype outside.
        with torch.autocast("cpu", enabled=False):
            out = conv(x.float(), weight.float(), None if bias is None else bias.float())
        return out.to(torch.get_autocast_dtype("cpu"))
    return conv(x, weight, bias)


def auto_impl(device: torch.device, tall: bool, training: bool) -> str:
    """The faster implementation where it was measured (``lt bench model``; docs/performance.md).

    - CUDA: ``mel_windows`` for every kernel, training and inference. musicnn at batch 256 on an
      H100 (2026-11-26), against library convs: training ×1.41 in fp32 and ×2.18 in bf16-mixed,
      inference ×2.2 and ×1.7. cuDNN's dgrad for one input channel is the slow part (57 % of a
      bf16 step), and its fp32 FFT algorithms took 18 GiB of workspace.
    - CPU: ``mel_windows`` when training with a kernel taller than one band (oneDNN's backward of
      such a conv runs at a few GFLOP/s); else ``conv2d``, whose forward is faster there.
    - Other devices (unmeasured): ``conv2d``.
    """
    if device.type == "cuda":
        return "mel_windows"
    if device.type == "cpu" and tall and training:
        return "mel_windows"
    return "conv2d"


def _mel_windows_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The mel-windows formulation (module docstring): ``[B, 1, F, T]`` → ``[B, C, F', T']``."""
    batch, _, n_mels, n_steps = x.shape
    filters, _, kernel_mels, _ = weight.shape
    n_positions = n_mels - kernel_mels + 1
    windows = x[:, 0].unfold(1, kernel_mels, 1)  # [B, F', T, kh] (a view)
    windows = windows.permute(0, 1, 3, 2).reshape(batch * n_positions, kernel_mels, n_steps)
    out = F.conv1d(windows, weight[:, 0], bias)  # [B·F', C, T']
    return out.reshape(batch, n_positions, filters, -1).transpose(1, 2)


def _mel_band_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The mel-band formulation (module docstring): ``[B, 1, F, T]`` → ``[B, C, F', T']``."""
    batch, _, n_mels, _ = x.shape
    filters, _, kernel_mels, kernel_steps = weight.shape
    if kernel_mels == 1:
        return _mel_windows_conv(x, weight, bias)
    n_positions = n_mels - kernel_mels + 1
    positions = torch.arange(n_positions, device=x.device)
    bands = positions[:, None] + torch.arange(kernel_mels, device=x.device)[None, :]  # [F', kh]: window's bands
    taps = weight[:, 0].permute(1, 0, 2)  # [kh, C, kw]
    banded = weight.new_zeros(n_positions, n_mels, filters, kernel_steps)  # [F', F, C, kw]
    banded = banded.index_put((positions[:, None].expand_as(bands), bands), taps.expand(n_positions, -1, -1, -1))
    banded = banded.permute(2, 0, 1, 3).reshape(filters * n_positions, n_mels, kernel_steps)  # [C·F', F, kw]
    band_bias = None if bias is None else bias.repeat_interleave(n_positions)  # [C·F']
    out = F.conv1d(x[:, 0], banded, band_bias)  # [B, C·F', T']
    return out.view(batch, filters, n_positions, -1)
