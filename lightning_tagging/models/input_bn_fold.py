"""musicnn's input BatchNorm folded into its front-end convolutions: no gradient for the spectrogram.

musicnn normalises its one-channel log-mel input with a BatchNorm whose scale γ and shift β
are learned, and then convolves it in five branches. Autograd reaches γ and β only through
the gradient of the whole normalised spectrogram, so every training step computes that
gradient for each branch: the "dgrad" of a convolution with one input channel, which cuDNN
runs badly (57 % of a bf16 training step of musicnn at batch 256 on an H100; `lt bench
model`, docs/performance.md). With a fixed front-end (every compression but ``log_learn``) nothing else
needs it.

A convolution is linear, so the affine map can move past it. With ``x̂`` the normalised
input, ``pad`` the branch's zero time padding and ``W``, ``b`` the conv's weight and bias::

    conv(pad(γ·x̂ + β), W) + b  =  conv(pad(x̂), γ·W)  +  β·conv(pad(1), W) + b

``conv(pad(1), W)`` (one row of ones as tall as the kernel) is, per filter and output frame,
the sum of the taps that fall on real frames: ``Σ W`` inside, less at the padded edges. It
does not depend on the batch, so it costs one tiny convolution. γ and β now reach the loss
through ``γ·W`` and that edge term, whose gradients come from the weight gradient (which
training computes anyway) and a sum of the output gradient, and the spectrogram's gradient
is never asked for. Same function up to float rounding (``tests/test_input_bn_fold.py``).

Only without autocast: in bf16 the two terms would each be rounded before they are added, and
where they nearly cancel that costs accuracy (``Musicnn._folds_input_bn``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .single_channel_conv import single_channel_conv2d


def batch_normalized(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` without its affine map, ``(x − mean) / sqrt(var + eps)``; running stats updated as ``bn`` does."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # a cumulative average (musicnn's momentum is 0.01: never taken there)
            factor = 1.0 / float(bn.num_batches_tracked)
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    return F.batch_norm(
        x,
        bn.running_mean if keep_running else None,
        bn.running_var if keep_running else None,
        None,
        None,
        batch_stats,
        factor,
        bn.eps,
    )


def folded_conv(
    normalized: torch.Tensor,
    conv: nn.Conv2d,
    scale: torch.Tensor,
    shift: torch.Tensor,
    time_padding: tuple[int, int],
    impl: str,
) -> torch.Tensor:
    """``conv(pad(scale·normalized + shift))`` computed as in the module docstring.

    ``normalized`` ``[B, 1, F, T]``; ``scale`` and ``shift`` one-element tensors (the input BN's
    γ and β); returns the conv output ``[B, C, F − kh + 1, T']`` with ``T'`` as the padded conv gives.
    """
    out = single_channel_conv2d(F.pad(normalized, time_padding), conv.weight * scale, None, impl)
    return out + folded_bias(conv, shift, normalized.shape[-1], time_padding)[None, :, None, :]


def folded_bias(conv: nn.Conv2d, shift: torch.Tensor, frames: int, time_padding: tuple[int, int]) -> torch.Tensor:
    """The conv's bias plus ``shift·conv(pad(1), W)``: a map ``[C, T']`` over output frames (module docstring).

    ``frames``: the unpadded input's length ``T``; ``T'`` is what the padded conv gives. In the
    weight's dtype even under autocast: the map's gradient sums the whole conv output's gradient,
    and a bf16 conv backward of it made the weight's gradient 3× less accurate (tests/test_triton_branch.py).
    """
    weight = conv.weight
    ones = weight.new_ones(1, 1, weight.shape[2], frames)
    with torch.autocast(weight.device.type, enabled=False):
        taps_on_frames = F.conv2d(F.pad(ones, time_padding), weight)[0, :, 0]  # [C, T']: a tiny conv
        constant = shift * taps_on_frames
        return constant if conv.bias is None else constant + conv.bias[:, None]
