"""musicnn's front-end branch — conv → ReLU → BatchNorm → max over mel — without its big tensor.

Each front-end branch of musicnn computes ``y = relu(conv(x))`` of shape
``[B, filters, F', T]`` (for the 38-band timbral kernel at batch 256: 256·204·59·187 floats,
2.3 GB), batch-normalises it and keeps only its maximum over the ``F'`` mel positions. The
plain implementation writes ``y``, the BN output and the max indices, and keeps them for
backward: musicnn saves 0.77 GiB per 16 clips for backward (`lt bench model`'s act GiB), about
12 GiB at batch 256, nearly all of it here, and much of the step goes to reading and writing
these tensors (BatchNorm forward and backward, the max, layout copies).

Two facts make that tensor unnecessary:

1. BatchNorm is, per channel, ``z = s·(y − μ) + β`` with ``s = γ/√(σ² + ε)``, monotone in
   ``y``. So ``max_f z = s·(max_f y − μ) + β`` when ``s ≥ 0``, and ``s·(min_f y − μ) + β``
   when ``s < 0``: the output needs only the max and min of ``y`` over mel, plus the
   per-channel mean ``μ`` and variance ``σ²`` of ``y``, which are sums.
2. BatchNorm's backward, ``dy = s·(dz − mean(dz) − ŷ·mean(dz·ŷ))`` with ``ŷ = (y − μ)/√(σ²+ε)``,
   sees ``dz`` nonzero only where the max was taken. Both means are then per-channel sums
   over the pooled ``[B, filters, T]`` gradient alone; only the final ``dy`` is dense.

So :class:`_ConvReluBatchNormMax` runs the conv over chunks of mel positions, keeps running
max/min (with tie counts) and Chan-merged mean/variance, and saves only the input, the pooled
extremes and the statistics. Backward recomputes each chunk's conv (one extra conv forward)
and pushes the dense ``dy`` of that chunk straight into the conv's gradients. Peak memory is
one chunk instead of the whole tensor; the function is the same, ties included: where
several mel positions share the max, ``amax``'s gradient is split evenly among them, and
so is it here.

It makes no host syncs (no value is read on the CPU, so on a GPU the CPU keeps queueing
work ahead): whether a channel pools its max or its min is chosen on the device from the sign
of γ, and the check that backward's recomputed conv matches the forward's runs only on the
first backward passes and every 100th after them (``_SampledCheck``).

Everything a chunk needs besides its conv is elementwise work and reductions over the conv
output (:func:`_chunk_forward_partials`, :func:`_chunk_grad_of_conv`). Run eagerly, each op
reads and writes the whole chunk again (about 7 passes in forward and 10 in backward). With
``compile_epilogues`` they go through ``torch.compile``, which fuses them into a few kernels
that read the conv output once or twice and write only what is needed: the chunk's traffic,
not its arithmetic, is what bounds this branch on a GPU.

With ``epilogue="triton"`` (musicnn's ``conv_impl="fused_triton"``) the chunk's conv and its
epilogue are one Triton kernel (``triton_branch.py``): the forward takes all mel positions in
one launch. By default (``Tiles.save``) it also writes ``relu(conv)`` once, in the input dtype,
and the backward's one kernel makes the conv output's gradient from it on the fly, summing it
into the weight and bias gradients: the speed of keeping the tensor, at the memory of one copy
of it per branch (no BN output, no max indices). Without ``Tiles.save`` it writes no conv output
at all, and the backward's kernel recomputes each chunk's conv and writes only its gradient.

Tests compare outputs, all gradients and the running statistics with the plain
``conv → relu → BatchNorm2d → amax`` in float64, float32 and bf16 autocast, eager and compiled
(``tests/test_fused_branch.py``, ``tests/test_triton_branch.py``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import triton_branch
from .single_channel_conv import single_channel_conv2d
from .triton_kernels import tiles_in_use

# Elements of one chunk of ``y`` (B·filters·positions·T): 2^26 floats = 256 MiB in fp32.
# Forward and backward hold a few temporaries of this size: `lt bench estimate` counts 1.6 GiB of
# temporaries at the peak of a fused musicnn's training step, whatever the batch. Smaller chunks
# would save memory but launch more kernels per step.
DEFAULT_CHUNK_ELEMENTS = 2**26


class _SampledCheck:
    """Says when to run a check that costs a host sync: on the first ``first`` calls, then every ``every``-th.

    The backward's recompute check (does the recomputed conv equal the forward's?) reads a
    device tensor on the host, which makes the CPU wait for the GPU. A mismatch would come from
    a non-deterministic convolution, a property of the setup rather than of one step, so a
    check at the start of training and now and then after it catches it without a sync per step.
    """

    def __init__(self, first: int = 3, every: int = 100) -> None:
        self.first, self.every, self.calls = first, every, 0
        self.paused = False

    def due(self) -> bool:
        if self.paused:
            return False
        self.calls += 1
        return self.calls <= self.first or self.calls % self.every == 0


_RECOMPUTE_CHECK = _SampledCheck()


@contextlib.contextmanager
def recompute_checks_paused() -> Iterator[None]:
    """No recompute check meanwhile, nor counted: for analyses on fake tensors, which hold no values to read."""
    saved, _RECOMPUTE_CHECK.paused = _RECOMPUTE_CHECK.paused, True
    try:
        yield
    finally:
        _RECOMPUTE_CHECK.paused = saved


def conv_relu_bn_max_over_mel(
    x: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    compile_epilogues: bool = False,
) -> torch.Tensor:
    """``bn(relu(conv(x))).amax(dim=2)`` for ``x`` ``[B, 1, F, T]``, never holding the whole conv output.

    ``conv`` is a one-input-channel ``nn.Conv2d`` (no padding: pad ``x`` first) and ``bn`` its
    ``nn.BatchNorm2d``; in training mode the running statistics are updated exactly as
    ``BatchNorm2d`` would. ``compile_epilogues``: fuse each chunk's elementwise work and
    reductions with ``torch.compile`` (training mode; the first call compiles). Returns
    ``[B, filters, T - kernel_width + 1]``.
    """
    epilogue = "compiled" if compile_epilogues else "eager"
    return fused_conv_relu_bn_max(x, conv.weight, conv.bias, bn, chunk_elements, epilogue)


EPILOGUES = ("eager", "compiled", "triton")


def fused_conv_relu_bn_max(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    bn: nn.BatchNorm2d,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    epilogue: str = "eager",
) -> torch.Tensor:
    """:func:`conv_relu_bn_max_over_mel` with the conv given as tensors, and a choice of kernels.

    ``weight`` ``[C, 1, kh, kw]``; ``bias`` ``[C]``, or a map ``[C, T']`` that varies over output
    frames (the input BatchNorm's folded shift, ``input_bn_fold.py``), or None. ``epilogue``:
    ``"eager"`` (torch ops on each chunk of the conv output), ``"compiled"`` (those ops fused by
    torch.compile), or ``"triton"`` (``triton_branch.py``: the conv computed and reduced in one
    kernel, its output never written).
    """
    if epilogue not in EPILOGUES:
        raise ValueError(f"unknown epilogue {epilogue!r}; choose one of {EPILOGUES}")
    n_positions = x.shape[2] - weight.shape[2] + 1
    n_frames = x.shape[3] - weight.shape[3] + 1
    per_position = x.shape[0] * weight.shape[0] * n_frames
    chunk = max(1, min(n_positions, chunk_elements // max(1, per_position)))
    # One band tall: the library conv. Taller: 1-D conv over mel windows (see single_channel_conv),
    # except for inference on a CPU, where the library conv's forward is the faster one.
    inference_on_cpu = x.device.type == "cpu" and not torch.is_grad_enabled()
    impl = "conv2d" if weight.shape[2] == 1 or inference_on_cpu else "mel_windows"
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(gamma)
    if epilogue == "triton":
        impl = "triton"
        if bias is None or bias.dim() == 1:  # the kernels take a map [C, T'] (a broadcast view costs nothing)
            bias = (weight.new_zeros(weight.shape[0]) if bias is None else bias)[:, None].expand(-1, n_frames)

    use_batch_stats = bn.training or bn.running_mean is None
    if not use_batch_stats:
        return _with_running_stats(x, weight, bias, bn, gamma, beta, impl, chunk)
    # Tiles.save: the kernels keep relu(conv) for backward, when there will be one.
    save = (impl == "triton" and bool(tiles_in_use().save) and torch.is_grad_enabled()
            and any(t is not None and t.requires_grad for t in (x, weight, bias)))
    out, mean, var = _apply_untraced(x, weight, bias, gamma, beta, bn.eps, impl, chunk, epilogue == "compiled", save)
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        _update_running_stats(bn, mean, var, count=per_position * n_positions // weight.shape[0])
    return out


@torch.compiler.disable
def _apply_untraced(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:class:`_ConvReluBatchNormMax`, which torch.compile runs as it is, between compiled graphs.

    Traced by dynamo (torch 2.11), its backward received zeros for the output's gradient, so every
    front-end gradient was zero (seen with ``aot_eager`` and ``Tiles.save``, whose backward has nothing
    else that stops the trace: the recompute check's counter made dynamo fall back to running it
    as it is). (``tests/test_triton_branch.py`` trains compiled models against eager ones.)
    """
    return _ConvReluBatchNormMax.apply(*args)


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """BatchNorm2d's update: exponential average (or cumulative, momentum None), unbiased variance."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        unbiased = var * (count / max(1, count - 1))
        bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
        bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)


def _chunks(n_positions: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, n_positions)) for start in range(0, n_positions, chunk)]


def _relu_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, impl: str, start: int,
               stop: int) -> torch.Tensor:
    """``relu(conv(x))`` at mel positions ``start:stop``: ``[B, filters, stop - start, T']``."""
    return F.relu(_conv_rows(x, weight, bias, impl, start, stop))


def _conv_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, impl: str, start: int,
               stop: int) -> torch.Tensor:
    """``conv(x)`` at mel positions ``start:stop``: ``[B, filters, stop - start, T']``."""
    return _conv(x[:, :, start:stop + weight.shape[2] - 1], weight, bias, impl)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, impl: str) -> torch.Tensor:
    """The valid conv of ``x`` ``[B, 1, F, T]``, its bias ``[C]`` or a map ``[C, T']`` over output frames."""
    if bias is not None and bias.dim() == 2:
        return single_channel_conv2d(x, weight, None, impl) + bias[None, :, None, :]
    return single_channel_conv2d(x, weight, bias, impl)


def _chunk_forward_partials(
    conv: torch.Tensor, sign: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the forward needs from one chunk's conv output ``[B, C, p, T]``, whose ReLU it takes here.

    Returns per (b, c, t): the extreme of ``relu(conv)`` over the ``p`` mel positions (the min
    where ``sign`` ``[1, C, 1]`` is negative, else the max), how many positions equal it (int32),
    and their sum (accumulation dtype); per channel: mean and biased variance over (b, p, t),
    in the accumulation dtype.
    """
    y = F.relu(conv)
    low, high = torch.aminmax(y, dim=2)  # one pass over the chunk for both
    value = torch.where(sign < 0, low, high)
    ties = (y == value.unsqueeze(2)).sum(dim=2, dtype=torch.int32)
    total = y.sum(dim=2, dtype=_accumulation_dtype(y))
    var, mean = torch.var_mean(y.to(_accumulation_dtype(y)), dim=(0, 2, 3), correction=0)
    return value, ties, total, mean, var


def _chunk_grad_of_conv(
    conv: torch.Tensor, pooled: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor, scaled_dz_at_extreme: torch.Tensor
) -> torch.Tensor:
    """The gradient of one chunk's conv output ``[B, C, p, T]`` (in its dtype), from BatchNorm's and the pool's.

    ``dy = y·k1 + k0`` everywhere (per-channel ``k0``, ``k1`` ``[1, C, 1, 1]``), plus
    ``scaled_dz_at_extreme`` ``[B, C, 1, T]`` where ``y = relu(conv)`` equals the ``pooled``
    extreme ``[B, C, T]``; then ReLU's gate: zero where ``conv ≤ 0``.
    """
    y = F.relu(conv)
    grad_y = torch.addcmul(k0, y.to(k1.dtype), k1)
    grad_y = torch.where(y == pooled.unsqueeze(2), grad_y + scaled_dz_at_extreme, grad_y)
    return torch.where(y > 0, grad_y, 0.0).to(conv.dtype)  # ReLU: y > 0 exactly where conv > 0


@functools.cache
def _compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` through ``torch.compile``, made once. Dynamic shapes: chunks and branches differ in size,
    and one kernel per shape would mean a compilation each."""
    return torch.compile(function, dynamic=True)


def _epilogue(function: Callable[..., Any], compiled: bool) -> Callable[..., Any]:
    return _compiled(function) if compiled else function


def _with_running_stats(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d,
                        gamma: torch.Tensor, beta: torch.Tensor, impl: str, chunk: int) -> torch.Tensor:
    """Evaluation mode: BN is a fixed per-channel affine map, so pool first, then map (autograd as usual).

    As in training mode, a channel with γ = 0 pools by the mean: its BN output ties at every position.
    """
    scale = gamma * torch.rsqrt(bn.running_var + bn.eps)
    sign = scale.sign()[None, :, None]
    n_positions = x.shape[2] - weight.shape[2] + 1
    if impl == "triton":
        wants_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, weight, bias, gamma, beta))
        if not wants_grad:  # the kernel pools the extreme the sign asks for
            value, _, total, *_ = triton_branch.forward_partials(*_compute_operands(x, weight), bias, scale.sign())
            extreme = torch.where(sign == 0, (total / n_positions).to(value.dtype), value)
            return ((extreme - bn.running_mean[None, :, None]) * scale[None, :, None]
                    + beta[None, :, None]).to(extreme.dtype)
        impl = "mel_windows"  # autograd through library ops (saliency maps and the like)
    pooled = None
    for start, stop in _chunks(n_positions, chunk):
        y = _relu_conv(x, weight, bias, impl, start, stop)
        high, low, total = y.amax(dim=2), y.amin(dim=2), y.sum(dim=2)  # (aminmax has no autograd formula)
        if pooled is None:
            pooled = (high, low, total)
        else:
            pooled = (pooled[0].maximum(high), pooled[1].minimum(low), pooled[2] + total)
    assert pooled is not None
    high, low, total = pooled
    extreme = torch.where(sign > 0, high, torch.where(sign < 0, low, total / n_positions))
    return ((extreme - bn.running_mean[None, :, None]) * scale[None, :, None] + beta[None, :, None]).to(extreme.dtype)


class _Extremes:
    """Running extreme over mel of ``y`` ``[B, C, p, T]`` chunks, per channel the max or the min, with tie counts.

    Chunks come as :func:`_chunk_forward_partials` gives them.

    ``sign`` ``[1, C, 1]`` (the sign of γ, a device tensor) picks the min where it is negative and
    the max elsewhere. Choosing on the device keeps the forward free of host syncs: reading the
    signs on the host would make the CPU wait for the GPU in every branch of every step.
    ``total`` is the sum over mel, for channels with γ = 0 (see the forward).
    """

    def __init__(self, sign: torch.Tensor) -> None:
        self.sign = sign
        self.value: torch.Tensor | None = None
        self.ties: torch.Tensor | None = None
        self.total: torch.Tensor | None = None

    def add(self, value: torch.Tensor, ties: torch.Tensor, total: torch.Tensor) -> None:
        """Merge one chunk's extreme, tie count and sum over its mel positions (``[B, C, T]`` each)."""
        if self.value is None or self.ties is None or self.total is None:
            self.value, self.ties, self.total = value, ties, total
            return
        # The better extreme wins; equal extremes add their ties.
        new_wins = torch.where(self.sign < 0, value < self.value, value > self.value)
        self.ties = torch.where(value == self.value, self.ties + ties, torch.where(new_wins, ties, self.ties))
        self.value = torch.where(new_wins, value, self.value)
        self.total = self.total + total


def _compute_operands(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``weight`` in the dtype a conv computes in here: autocast's, if it is on, else their own."""
    device_type = x.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
    return x.to(dtype), weight.to(dtype).contiguous()


def _accumulation_dtype(y: torch.Tensor) -> torch.dtype:
    """float32 for bf16/fp16/fp32 tensors, float64 for float64 ones."""
    return torch.promote_types(y.dtype, torch.float32)


class _Moments:
    """Per-channel mean and biased variance over (batch, mel, time) of chunks, merged in float64 (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None  # sum of squared deviations from the mean

    def add(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """Merge one chunk's per-channel mean and biased variance over its ``n`` elements per channel."""
        mean, m2 = mean.double(), var.double() * n
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mean is not None and self.m2 is not None
        return self.mean, self.m2 / self.count


class _ConvReluBatchNormMax(torch.autograd.Function):
    """Training-mode ``batch_norm(relu(conv(x))).amax(2)``; returns (out, batch mean, batch variance)."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, eps, impl, chunk, compiled, save):  # type: ignore[override]
        device_type = x.device.type
        ctx.autocast = (device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        sign = gamma.detach().sign()[None, :, None]
        extremes, moments = _Extremes(sign), _Moments()
        saved_conv = None  # relu(conv) for backward, where Tiles.save asks for it and a backward will run
        if impl == "triton":  # one kernel over all mel positions: no chunks, the conv output is not written
            value, ties, total, mean64, var64, count, saved_conv = triton_branch.forward_partials(
                *_compute_operands(x, weight), bias, sign.flatten(), save=save)
            extremes.add(value, ties, total)
            moments.add(mean64, var64, count)
        else:
            partials = _epilogue(_chunk_forward_partials, compiled)
            for start, stop in _chunks(x.shape[2] - weight.shape[2] + 1, chunk):
                conv = _conv_rows(x, weight, bias, impl, start, stop)
                value, ties, total, chunk_mean, chunk_var = partials(conv, sign)
                extremes.add(value, ties, total)
                moments.add(chunk_mean, chunk_var, conv.numel() // conv.shape[1])
        mean64, var64 = moments.result()
        acc = _accumulation_dtype(x)
        mean, var = mean64.to(acc), var64.to(acc)
        invstd = torch.rsqrt(var + eps)
        # The sign of s = γ·invstd picks the max (γ > 0) or the min (γ < 0). With γ = 0 every mel
        # position ties (the BN output is β everywhere), so amax would split the gradient among all
        # of them: the mean over mel stands in for the extreme, and every position counts as a tie.
        assert extremes.value is not None and extremes.ties is not None and extremes.total is not None
        n_positions = x.shape[2] - weight.shape[2] + 1
        mean_over_mel = (extremes.total / n_positions).to(extremes.value.dtype)
        pooled = torch.where(sign == 0, mean_over_mel, extremes.value)
        ties = torch.where(sign == 0, n_positions, extremes.ties)
        y_hat = (pooled.to(acc) - mean[None, :, None]) * invstd[None, :, None]
        out = (y_hat * gamma.to(acc)[None, :, None] + beta.to(acc)[None, :, None]).to(pooled.dtype)
        ctx.save_for_backward(x, weight, bias, gamma, pooled, ties, y_hat, mean, invstd, saved_conv)
        ctx.impl, ctx.chunk, ctx.count, ctx.compiled = impl, chunk, moments.count, compiled
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):  # type: ignore[override]
        x, weight, bias, gamma, pooled, ties, y_hat, mean, invstd, saved_conv = ctx.saved_tensors
        grad_out = grad_out.to(y_hat.dtype)
        # BatchNorm backward with dz nonzero only at the pooled positions (see module docstring).
        grad_beta = grad_out.sum(dim=(0, 2))
        grad_gamma = (grad_out * y_hat).sum(dim=(0, 2))
        # dy = s·(dz − mean(dz) − ŷ·mean(dz·ŷ)), ŷ = (y − μ)·invstd, expanded as dy = s·dz + y·k1 + k0
        # with per-channel k0, k1 so that each chunk costs few passes over its elements.
        scale = gamma.to(invstd.dtype) * invstd
        mean_dz, mean_dz_y_hat = grad_beta / ctx.count, grad_gamma / ctx.count
        k1 = (-scale * invstd * mean_dz_y_hat)[None, :, None, None]
        k0 = (-scale * mean_dz + scale * mean * invstd * mean_dz_y_hat)[None, :, None, None]
        # amax/amin split their gradient evenly among tied positions.
        # (Zero where γ = 0: those channels' BN output is constant, so y gets no gradient at all.)
        scaled_dz_at_extreme = (grad_out * scale[None, :, None] / ties).unsqueeze(2)

        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        needs_b = needs_b and bias is not None
        grad_gamma, grad_beta = grad_gamma.to(gamma.dtype), grad_beta.to(gamma.dtype)
        if not (needs_x or needs_w or needs_b):
            return None, None, None, grad_gamma, grad_beta, None, None, None, None, None
        grad_x = torch.zeros_like(x) if needs_x else None
        grad_w = torch.zeros_like(weight) if needs_w else None
        grad_b = torch.zeros_like(bias) if needs_b else None
        if saved_conv is not None:  # nothing recomputed, so nothing to check
            _triton_saved_backward(ctx, x, weight, saved_conv, pooled, k0, k1, scaled_dz_at_extreme, grad_x, grad_w,
                                   grad_b)
            return grad_x, grad_w, grad_b, grad_gamma, grad_beta, None, None, None, None, None
        matched = torch.zeros_like(ties) if _RECOMPUTE_CHECK.due() else None  # positions at the extreme, counted
        if ctx.impl == "triton":
            _triton_backward(ctx, x, weight, bias, pooled, k0, k1, scaled_dz_at_extreme, grad_x, grad_w, grad_b,
                             matched)
        else:
            _torch_backward(ctx, x, weight, bias, pooled, k0, k1, scaled_dz_at_extreme, grad_x, grad_w, grad_b,
                            matched)
        if matched is not None and not torch.equal(torch.where(gamma[None, :, None] == 0, ties, matched), ties):
            # The recomputed conv must equal the forward's bit for bit, or gradients would go astray.
            # (γ = 0 channels match everywhere by definition and get no gradient: not compared.)
            raise RuntimeError(
                "fused musicnn front-end: the conv recomputed in backward differs from the forward pass "
                "(non-deterministic convolution?); use conv_impl='mel_windows' or 'conv2d'"
            )
        return grad_x, grad_w, grad_b, grad_gamma, grad_beta, None, None, None, None, None


def _torch_backward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pooled: torch.Tensor,
                    k0: torch.Tensor, k1: torch.Tensor, scaled_dz_at_extreme: torch.Tensor,
                    grad_x: torch.Tensor | None, grad_w: torch.Tensor | None, grad_b: torch.Tensor | None,
                    matched: torch.Tensor | None) -> None:
    """Adds into ``grad_x``, ``grad_w``, ``grad_b`` (those not None) and ``matched``, chunk by chunk with torch ops."""
    needs_x, needs_w, needs_b = grad_x is not None, grad_w is not None, grad_b is not None
    grad_of_conv = _epilogue(_chunk_grad_of_conv, ctx.compiled)
    device_type, autocast_on, autocast_dtype = ctx.autocast
    kernel_rows = weight.shape[2] - 1
    for start, stop in _chunks(x.shape[2] - kernel_rows, ctx.chunk):
        rows = x[:, :, start:stop + kernel_rows].detach().requires_grad_(needs_x)
        w = weight.detach().requires_grad_(needs_w)
        b = None if bias is None else bias.detach().requires_grad_(needs_b)
        with torch.enable_grad(), torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_on):
            conv = _conv(rows, w, b, ctx.impl)
        with torch.no_grad():
            if matched is not None:  # (an extra pass over the chunk, on the few steps that check)
                matched += (F.relu(conv) == pooled.unsqueeze(2)).sum(dim=2, dtype=torch.int32)
            grad_conv = grad_of_conv(conv.detach(), pooled, k0, k1, scaled_dz_at_extreme)
        inputs = [t for t, needed in ((rows, needs_x), (w, needs_w), (b, needs_b)) if needed and t is not None]
        grads = iter(torch.autograd.grad(conv, inputs, grad_conv))
        if needs_x:
            grad_x[:, :, start:stop + kernel_rows] += next(grads)
        if needs_w:
            grad_w += next(grads)
        if grad_b is not None:
            grad_b += next(grads)


def _triton_backward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pooled: torch.Tensor,
                     k0: torch.Tensor, k1: torch.Tensor, scaled_dz_at_extreme: torch.Tensor,
                     grad_x: torch.Tensor | None, grad_w: torch.Tensor | None, grad_b: torch.Tensor | None,
                     matched: torch.Tensor | None) -> None:
    """As :func:`_torch_backward`, with ``triton_branch``'s kernels: each chunk's conv is recomputed in the
    kernel that writes the conv output's gradient, and the weight gradient gathers its windows from ``x``.
    The spectrogram's gradient, when asked for (``log_learn``), is the library's transposed conv."""
    x_c, weight_c = _forward_operands(ctx, x, weight)
    kernel_rows = weight.shape[2] - 1
    for start, stop in _chunks(x.shape[2] - kernel_rows, ctx.chunk):
        grad_conv, matched_here = triton_branch.grad_of_conv(
            x_c, weight_c, bias, start, stop, pooled, k0.flatten(), k1.flatten(), scaled_dz_at_extreme.squeeze(2))
        if matched is not None:
            matched += matched_here
        if grad_w is not None:
            grad_w += triton_branch.weight_grad(x_c, grad_conv, start, weight.shape).to(grad_w.dtype)
        if grad_b is not None:  # the bias map's gradient: summed over clips and mel positions
            grad_b += grad_conv.sum(dim=(0, 2), dtype=_accumulation_dtype(grad_conv)).to(grad_b.dtype)
        if grad_x is not None:
            _add_spectrogram_grad(grad_x, weight_c, grad_conv, start)


def _triton_saved_backward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, saved_conv: torch.Tensor,
                           pooled: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor,
                           scaled_dz_at_extreme: torch.Tensor, grad_x: torch.Tensor | None,
                           grad_w: torch.Tensor | None, grad_b: torch.Tensor | None) -> None:
    """As :func:`_triton_backward`, from the forward's saved ``relu(conv)`` ``[B, C, F', T']`` (``Tiles.save``):
    one kernel makes the conv output's gradient from it and sums it into the weight gradient and, over
    mel, into the bias map's, without writing it. Only the spectrogram's gradient (``log_learn``)
    needs it written: chunk by chunk, by torch ops."""
    x_c, weight_c = _forward_operands(ctx, x, weight)
    if grad_w is not None or grad_b is not None:
        weight_grad, grad_sums = triton_branch.weight_grad_from_saved(
            x_c, saved_conv, pooled, k0.flatten(), k1.flatten(), scaled_dz_at_extreme.squeeze(2), weight.shape)
        if grad_w is not None:
            grad_w += weight_grad.to(grad_w.dtype)
        if grad_b is not None:  # the bias map's gradient: summed over clips and mel positions
            grad_b += grad_sums.sum(dim=0).to(grad_b.dtype)
    if grad_x is not None:
        for start, stop in _chunks(saved_conv.shape[2], ctx.chunk):
            # relu(y) = y: the saved conv output is the function's "conv" argument as it sees it
            grad_conv = _chunk_grad_of_conv(saved_conv[:, :, start:stop], pooled, k0, k1, scaled_dz_at_extreme)
            _add_spectrogram_grad(grad_x, weight_c, grad_conv, start)


def _forward_operands(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``weight`` as the forward's kernels read them: in its autocast dtype, if it had one."""
    device_type, autocast_on, autocast_dtype = ctx.autocast
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_on):
        return _compute_operands(x, weight)


def _add_spectrogram_grad(grad_x: torch.Tensor, weight: torch.Tensor, grad_conv: torch.Tensor, start: int) -> None:
    """Adds the spectrogram's gradient from the conv output's at mel positions ``start:``, ``grad_conv``
    ``[B, C, p, T']``: the library's transposed conv, in the accumulation dtype (CPUs sum bf16 convs in
    bf16, and on an H100 cuDNN's one-channel dgrad ran slower in bf16 than in fp32; docs/performance.md)."""
    acc = _accumulation_dtype(grad_conv)
    rows = grad_x[:, :, start:start + grad_conv.shape[2] + weight.shape[2] - 1]
    rows += torch.nn.grad.conv2d_input(rows.shape, weight.to(acc), grad_conv.to(acc)).to(grad_x.dtype)
