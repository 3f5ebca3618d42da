"""sampleCNN's block epilogue — BatchNorm → ReLU → max-pool — with the pool first.

Each of sampleCNN's nine blocks computes ``out = maxpool_k(relu(bn(y)))`` of the conv output
``y`` ``[B, C, T]`` (k = 3: out is ``[B, C, T // 3]``). The plain modules write the
normalised tensor and the rectified one, both ``[B, C, T]``, only to keep every third value;
their backward passes turn the pooled gradient back into full-length tensors three times
(pool, ReLU, BatchNorm). In a bf16 training step on an H100 this was 43 % of the time.

Per channel c, BatchNorm is the affine map ``z = s·(y − μ) + β`` with ``s = γ/√(σ² + ε)``,
where μ and σ² are the mean and biased variance of channel c over (batch, time) of the
WHOLE ``y`` in training, or the running statistics in evaluation. ``relu(s·(y − μ) + β)``
is a non-decreasing function of ``y`` when ``s ≥ 0`` and a non-increasing one when ``s < 0``,
and a monotone function commutes with the max of a window (the max becomes the min when the
function decreases). ``s`` has the sign of γ, so::

    maxpool(relu(bn(y))) = relu(s·(P − μ) + β),   P = maxpool(y) where γ ≥ 0, minpool(y) where γ < 0

Normalisation and ReLU, forward and backward, then act on ``[B, C, T // 3]``. Only the
statistics (one reduction) and the pool read the full ``y``. Exact: the same function, and
the same gradients, because the pool routes its gradient to the same position. ``P`` is
``y`` at the window position where ``z`` is largest — the first one where several tie, as
``MaxPool1d`` picks (``max_pool1d`` of ``sign·y`` also keeps the first maximum, and
``sign·y`` ties exactly where ``z`` does before rounding). Windows where the ReLU makes
``z`` tie at 0 pass no gradient in either. Values of ``z`` that tie only after rounding
(frequent in bf16) may send a window's gradient to another of its positions than the plain
pool does: a difference of the size of bf16's own error, which the tests bound.

Which pool, without asking the host: ``sign = ±1`` per channel from ``γ ≥ 0`` on the device,
``P = sign·maxpool(sign·y)`` (multiplying by ±1 is exact in every float format). Given ``y``
(:func:`maxpool_relu_bn`), ``sign·y`` costs one full-length write and one read more than a
plain max pool. sampleCNN's blocks avoid it (:func:`conv_maxpool_relu_bn`): they negate the
filters whose γ is negative, so their conv outputs ``sign·y`` directly, exactly. (Pooling both
ways and picking per channel with ``torch.where`` would read ``y`` twice and write two sets of
int64 indices, 8 bytes per window each.)

Full-length ``[B, C, T]`` passes of a training step, eager, ignoring the 3× shorter tensors:

- plain: forward BN (statistics: read; normalise: read, write), ReLU (read, write), pool
  (read); backward pool (write), ReLU (2 reads, write), BN (its sums: 2 reads; ``dy``: 2 reads,
  write). 10 reads, 5 writes.
- here: forward statistics (read), pool (read); backward ``dy`` (read ``y``, write) and a
  scatter of the pooled gradient into a third of it. About 3 reads, 1 write. (The passes over
  the 3× shorter tensors add about three full-length ones: ``lt bench estimate`` counts them.)
  Under bf16 autocast the statistics are computed from a float32 copy of ``y`` (one read, one
  float32 write), as BatchNorm accumulates in float32: a bf16 mean would shift the
  output by up to 2⁻⁹·|μ|·s. Kept for backward: ``y``, the pool's int64 indices and ``P``
  (one per window), not the ReLU output ``[B, C, T]``.

The dense part of the backward is written out (:class:`_PoolAndStatistics`): with
``n = B·T``, ``∂μ/∂y = 1/n`` and ``∂σ²/∂y = 2(y − μ)/n``, so ``dy = a·y + b`` per channel
plus the pooled gradient at the pooled positions. Autograd through ``torch.var_mean`` and
the pool gives the same numbers in 16 full-length passes, more than the plain backward's 9
(``var_mean``'s backward recomputes the mean and takes four elementwise passes, the pool's
writes a zero tensor, and the gradients of ``y`` are added up). Everything on the short
tensors (γ, β, ε, ReLU) is left to autograd. Under bf16, ``dy`` at the pooled positions is
rounded twice (the dense term, then the scatter's sum).

γ = 0: ``s = 0``, the output is ``relu(β)`` at every position, as in the plain modules, and
so are the gradients of ``y`` (zero), β and everything upstream. The gradient of that γ is
``Σ dout·𝟙[β > 0]·(P − μ)/√(σ² + ε)`` with ``P`` the window's max (γ = 0 counts as γ ≥ 0):
the derivative for γ growing from 0. The plain pool sees three equal values there and takes
the first, so its γ gradient uses ``y`` at the first position of each window instead. Both
are valid subgradients; only this one number differs.

No value is read on the host: the pool direction is chosen on the device, and with
``momentum=None`` the running averages' factor ``1/num_batches_tracked`` stays a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable


def maxpool_relu_bn(y: torch.Tensor, bn: nn.BatchNorm1d, pool: int = 3) -> torch.Tensor:
    """``F.max_pool1d(F.relu(bn(y)), pool)``, normalising only the pooled positions (module docstring).

    Args:
        y: ``[B, C, T]`` pre-normalisation activations (a conv output), any float dtype; or
            ``[B, C, 1, T]`` (the channels-last layout of ``samplecnn_nhwc.py``, which the result keeps).
        bn: the ``nn.BatchNorm1d(C)`` to apply: its γ, β, ε; in training mode its running mean,
            running (unbiased) variance and ``num_batches_tracked`` are updated as it would update them.
        pool: window and stride of the max pool (no padding; a tail of ``T % pool`` is dropped).

    Returns:
        ``[B, C, T // pool]`` (or ``[B, C, 1, T // pool]``) in ``y``'s dtype (under autocast: the
        conv's bf16, as BatchNorm returns).
    """
    sign = _pool_signs(bn, y.device)
    return _pooled_epilogue(y * _per_channel(sign.to(y.dtype), y), sign, bn, pool)


def conv_maxpool_relu_bn(
    convolve: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], conv: nn.Conv1d, bn: nn.BatchNorm1d,
    pool: int = 3,
) -> torch.Tensor:
    """:func:`maxpool_relu_bn` of ``conv``'s output, with the pool's sign folded into the conv's filters.

    ``convolve(weight, bias)`` runs ``conv``'s convolution of the block's input with the given
    weight and bias (``F.conv1d``, or ``samplecnn_nhwc.conv_with``). Filters whose BatchNorm γ is
    negative are negated, so the conv itself outputs ``sign·y`` and the pass that would multiply
    ``y`` by the sign is never made. Negation is exact in every float format and commutes with a
    conv's products and sums, so the result, and every gradient, equals :func:`maxpool_relu_bn`'s
    bit for bit.
    """
    sign = _pool_signs(bn, conv.weight.device)
    flip = sign.to(conv.weight.dtype)
    bias = None if conv.bias is None else conv.bias * flip
    weight = conv.weight * flip.view(-1, *([1] * (conv.weight.ndim - 1)))  # [out, in, k]: flip each filter
    return _pooled_epilogue(convolve(weight, bias), sign, bn, pool)


def _pool_signs(bn: nn.BatchNorm1d, device: torch.device) -> torch.Tensor:
    """+1 where ``relu(bn(·))`` increases with its input (γ ≥ 0, zero included), −1 where it decreases: ``[C]``."""
    if bn.weight is None:
        return torch.ones(bn.num_features, device=device)
    return torch.where(bn.weight.detach() >= 0, 1.0, -1.0)


def _pooled_epilogue(y_signed: torch.Tensor, sign: torch.Tensor, bn: nn.BatchNorm1d, pool: int) -> torch.Tensor:
    """``maxpool(relu(bn(y)))`` from ``y_signed = sign·y`` (``sign`` ``[C]`` from :func:`_pool_signs`)."""
    y = y_signed  # (only its shape, dtype and device are read here)
    if not (y.ndim == 3 or (y.ndim == 4 and y.shape[2] == 1)) or y.shape[1] != bn.num_features:
        raise ValueError(f"expected [B, {bn.num_features}, T] or [B, {bn.num_features}, 1, T], got {tuple(y.shape)}")
    acc = torch.promote_types(y.dtype, torch.float32)  # BatchNorm's statistics dtype
    channels = y.shape[1]
    gamma = bn.weight if bn.weight is not None else torch.ones(channels, dtype=acc, device=y.device)
    beta = bn.bias if bn.bias is not None else torch.zeros(channels, dtype=acc, device=y.device)
    sign = sign.to(acc)

    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    if batch_stats:
        count = y.numel() // channels
        if bn.training and count <= 1:  # as F.batch_norm: a variance needs two values
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {y.shape}")
        signed_max, signed_mean, var = _PoolAndStatistics.apply(y_signed, pool)
        mean = signed_mean * sign  # the mean of y (that of sign·y, times sign; the variance is the same)
        if bn.training and bn.track_running_stats and bn.running_mean is not None:
            _update_running_stats(bn, mean.detach(), var.detach(), count)
    else:  # the running statistics are constants: autograd's pool backward is all that is needed
        signed_max = _max_pool(y_signed, pool)
        mean, var = bn.running_mean, bn.running_var

    scale = gamma * torch.rsqrt(var + bn.eps)  # s, [C]
    # s·P + (β − s·μ) with P = sign·signed_max, as BatchNorm's kernels compute it (scale, then shift): one
    # pass over [B, C, L], in float32 (float64 for float64 y); autograd keeps signed_max (y's dtype) for backward.
    normalized = torch.addcmul(_per_channel(beta - scale * mean, y), signed_max, _per_channel(scale * sign, y))
    return F.relu_(normalized.to(y.dtype))  # round, then rectify: what the plain modules do


class _PoolAndStatistics(torch.autograd.Function):
    """``y`` ``[B, C, T]`` → (``maxpool(y)`` ``[B, C, T // pool]``, mean ``[C]``, biased variance ``[C]``).

    The pool in ``y``'s dtype; the statistics over (batch, time) in float32 (float64 for a float64
    ``y``). Backward: the pool's gradient at the pooled positions ``+ dmean/n + dvar·2(y − μ)/n``
    everywhere, one elementwise pass and a scatter. (``y`` is ``sign·y`` of the module docstring.)
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, y: torch.Tensor, pool: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dims = (0, *range(2, y.ndim))  # all but the channels
        var, mean = torch.var_mean(y.to(torch.promote_types(y.dtype, torch.float32)), dim=dims, correction=0)
        pooled, index = _max_pool(y, pool, return_indices=True)  # index: position in T
        ctx.save_for_backward(y, index, mean)
        return pooled, mean, var

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_pooled: torch.Tensor, grad_mean: torch.Tensor, grad_var: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        y, index, mean = ctx.saved_tensors  # type: ignore[attr-defined]
        count = y.numel() // y.shape[1]
        slope = grad_var * (2.0 / count)  # dy = slope·y + offset, per channel
        offset = grad_mean / count - slope * mean
        offset, slope = _per_channel(offset, y), _per_channel(slope, y)
        if torch.compiler.is_compiling():  # (dynamo refuses a channels-last out=; compiled, the cast fuses anyway)
            grad = torch.addcmul(offset, y, slope).to(y.dtype)
        else:  # in the statistics' dtype, rounded once to y's (bf16 under autocast), in one pass
            grad = torch.empty_like(y)  # (in y's memory layout)
            torch.addcmul(offset, y, slope, out=grad)
        # The pool's gradient reaches y at `index`. (4-D: the pool's index counts positions in the
        # 1 × T plane, which are the positions along T.)
        grad.scatter_add_(y.ndim - 1, index, grad_pooled.to(y.dtype))
        return grad, None


def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` ``[C]`` shaped to broadcast over ``like`` ``[B, C, …]``."""
    return values.view(-1, *([1] * (like.ndim - 2)))


def _max_pool(x: torch.Tensor, pool: int, return_indices: bool = False) -> Any:
    """Max-pool along the last axis of ``[B, C, T]`` or ``[B, C, 1, T]`` (the latter stays channels-last)."""
    if x.ndim == 3:
        return F.max_pool1d(x, pool, return_indices=return_indices)
    return F.max_pool2d(x, (1, pool), return_indices=return_indices)


def _update_running_stats(bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """BatchNorm's update of its buffers from the batch ``mean`` and biased ``var`` of ``count`` values each."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        # momentum None: a cumulative average, factor 1/batches (a device tensor: reading it would sync).
        batches = bn.num_batches_tracked.to(bn.running_mean.dtype)
        factor = batches.reciprocal() if bn.momentum is None else bn.momentum
        unbiased = var * (count / (count - 1))
        bn.running_mean.mul_(1 - factor).add_(factor * mean.to(bn.running_mean.dtype))
        bn.running_var.mul_(1 - factor).add_(factor * unbiased.to(bn.running_var.dtype))
