"""musicnn's fused front-end branch with the conv inside the fusion: ``triton_kernels.py`` as torch ops.

``fused_branch.py`` never keeps a branch's whole conv output ``y`` ``[B, C, F', T']``, but with
library convs it still writes each chunk of it to memory and reads it back: the conv writes the
chunk, then elementwise kernels read it for the max over mel and the BatchNorm statistics. The
Triton kernels compute the conv in registers and reduce it on the spot, so ``y`` never exists
in memory. ``fused_branch`` calls them through three functions:

- :func:`forward_partials` — per (clip, filter, frame): the extreme over mel of ``relu(conv)``
  (max, or min where BatchNorm's scale is negative), how many mel positions tie at it and their
  sum; per filter: the mean and variance of ``relu(conv)``. It reads the spectrogram and the
  weights, and with ``Tiles.save`` (the default) also writes ``relu(conv)`` for backward.
- :func:`weight_grad_from_saved` — backward, from that saved output: the weight gradient, and the
  sums over mel of the conv output's gradient (the bias map's), which it computes on the fly and
  never writes.
- Without ``Tiles.save``, backward recomputes instead: :func:`grad_of_conv` writes the gradient of
  the conv output at a chunk of mel positions, the conv recomputed inside, and :func:`weight_grad`
  sums the weight gradient from that chunk.

The timbral convs can read a packed copy of their windows (``Tiles.pack``: :func:`pack_windows`,
:func:`padded_weight`), made inside each op, so that the kernels' loads of them are aligned.

Each kernel launch is a torch custom op (``torch.ops.lightning_tagging.*``) with a "fake"
implementation that only allocates the outputs, and a FLOP formula. So the model runs on fake
tensors (``lt bench estimate``, the host-sync tests), its FLOPs and memory traffic are counted
like any operator's (inputs read once, outputs written once: what the kernels move), and
``torch.compile`` sees an opaque operator rather than a Python launcher. Each op also takes the
tiling (``triton_kernels.tiles_in_use()``, as a list of ints), so its fake implementation and
the kernel agree on the shapes of per-tile outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.flop_counter import register_flop_formula

from .triton_interpreter import launch
from .triton_kernels import TRITON_DTYPES, Tiles, accumulation_dtype, kernel_constants, tiles_in_use
from .triton_kernels import forward_kernel as _forward_kernel
from .triton_kernels import grad_kernel as _grad_kernel
from .triton_kernels import weight_grad_kernel as _weight_grad_kernel


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _as_list(tiles: Tiles) -> list[int]:
    """``tiles`` as the ops take it: a custom op's arguments are tensors and plain numbers. (Not
    ``dataclasses.astuple``: its deep copy is a graph break for torch.compile.)"""
    return [getattr(tiles, field.name) for field in dataclasses.fields(tiles)]


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[int, int, int, int]:
    """Shapes ``(F', T', C, K)`` of a valid conv of ``x`` ``[B, 1, F, T]`` with ``weight`` ``[C, 1, kh, kw]``."""
    if x.dtype not in TRITON_DTYPES or weight.dtype != x.dtype:
        raise TypeError(f"fused_triton: x and weight must share a float dtype, got {x.dtype} and {weight.dtype}")
    if x.device.type == "cpu" and x.dtype == torch.float16:
        raise TypeError("fused_triton: float16 on a CPU (Triton's interpreter rounds it wrongly); use bfloat16")
    if not weight.is_contiguous():
        raise ValueError("fused_triton: the weight must be contiguous")
    filters, _, kernel_mels, kernel_steps = weight.shape
    n_positions, n_frames = x.shape[2] - kernel_mels + 1, x.shape[3] - kernel_steps + 1
    if n_positions < 1 or n_frames < 1:
        raise ValueError(f"fused_triton: input {tuple(x.shape)} is smaller than the kernel {tuple(weight.shape)}")
    if bias.shape != (filters, n_frames):
        raise ValueError(f"fused_triton: the bias map must be [C, T'] = {[filters, n_frames]}, got {list(bias.shape)}")
    return n_positions, n_frames, filters, kernel_mels * kernel_steps


@dataclasses.dataclass(frozen=True)
class _KernelInput:
    """What a kernel reads for a spectrogram ``x`` ``[B, 1, F, T]``: ``x`` itself, or its packed windows."""

    x: torch.Tensor
    taps_per_row: int  # the kernels' KW: the conv's width, or Tiles.pack when packed
    strides: tuple[int, int, int]  # of clips, mel rows and frames (sxb, sxf, sxt)
    packed: bool

    def constants(self) -> dict[str, Any]:
        return {"KW": self.taps_per_row, "PACKED": self.packed}


def packs(tiles: Tiles, kernel_mels: int, kernel_steps: int) -> bool:
    """Whether the kernels read packed windows (``Tiles.pack``) for a ``kernel_mels × kernel_steps`` conv:
    taller than one band (a one-band kernel's taps are contiguous frames already) and at most
    ``pack`` frames wide."""
    return bool(tiles.pack) and kernel_mels > 1 and kernel_steps <= tiles.pack


# Packed taps and rows are padded to multiples of 16 elements: Triton vectorizes a load, and
# pipelines it (cp.async), only where it can prove 16-element alignment and a mask that is constant
# over each vector, and it learns that of integer arguments divisible by 16.
ALIGNMENT = 16


def _round_up(n: int, multiple: int) -> int:
    return _cdiv(n, multiple) * multiple


def packed_taps(kernel_mels: int, width: int) -> int:
    """The taps a packed kernel row holds: ``kh·width``, zero-padded to a multiple of 16."""
    return _round_up(kernel_mels * width, ALIGNMENT)


def pack_windows(x: torch.Tensor, kernel_mels: int, kernel_steps: int, width: int) -> torch.Tensor:
    """``[B, T', R]`` with ``[b, t, m·width + j] = x[b, 0, m, t + j]`` for ``j < kernel_steps``, else 0.

    ``x`` ``[B, 1, F, T]``, ``T' = T − kernel_steps + 1``: each frame's window over every mel row,
    so the taps ``(i, j)`` of mel position ``f`` are the contiguous run from ``f·width``. Rows hold
    ``R ≥ F·width`` elements, a multiple of 16, with zeros after the windows, so that the last mel
    position's :func:`packed_taps` run stays inside its row.
    """
    batch, _, n_mels, n_steps = x.shape
    n_frames = n_steps - kernel_steps + 1
    row = _round_up((n_mels - kernel_mels) * width + packed_taps(kernel_mels, width), ALIGNMENT)
    packed = x.new_zeros(batch, n_frames, row)
    windows = packed[:, :, :n_mels * width].view(batch, n_frames, n_mels, width)
    windows[..., :kernel_steps] = x[:, 0].unfold(2, kernel_steps, 1).transpose(1, 2)  # [B, T', F, kw]
    return packed


def padded_weight(weight: torch.Tensor, width: int) -> torch.Tensor:
    """``weight`` ``[C, 1, kh, kw]`` as a packed kernel reads it: ``[C, packed_taps]``, contiguous, with tap
    ``(i, j)`` at ``i·width + j`` and zeros elsewhere."""
    filters, _, kernel_mels, kernel_steps = weight.shape
    padded = weight.new_zeros(filters, packed_taps(kernel_mels, width))
    padded[:, :kernel_mels * width].view(filters, kernel_mels, width)[..., :kernel_steps] = weight[:, 0]
    return padded


def _kernel_input(x: torch.Tensor, kernel_mels: int, kernel_steps: int, tiles: Tiles) -> _KernelInput:
    if packs(tiles, kernel_mels, kernel_steps):
        windows = pack_windows(x, kernel_mels, kernel_steps, tiles.pack)
        return _KernelInput(windows, tiles.pack, (windows.stride(0), tiles.pack, windows.stride(1)), True)
    return _KernelInput(x, kernel_steps, (x.stride(0), x.stride(2), x.stride(3)), False)


# --- forward -------------------------------------------------------------------------------


def _extremes_outputs(x: torch.Tensor, weight: torch.Tensor, tiles: Tiles, save: bool) -> tuple[torch.Tensor, ...]:
    """Allocated outputs of the forward kernel: value, ties, total ``[B, C, T']``; means, m2s ``[B, tiles, C]``;
    and with ``save`` the conv output ``y`` with padded rows (:func:`_padded_rows`), else an empty ``[0]``."""
    batch, filters, acc = x.shape[0], weight.shape[0], accumulation_dtype(x.dtype)
    n_frames = x.shape[3] - weight.shape[3] + 1
    cells = (batch, filters, n_frames)
    partials = (batch, _cdiv(n_frames, tiles.frames), filters)
    saved = _padded_rows(x, weight, 0, x.shape[2] - weight.shape[2] + 1) if save else x.new_empty(0)
    return (x.new_empty(cells), x.new_empty(cells, dtype=torch.int32), x.new_empty(cells, dtype=acc),
            x.new_empty(partials, dtype=acc), x.new_empty(partials, dtype=acc), saved)


@torch.library.custom_op("lightning_tagging::conv_relu_extremes", mutates_args=())
def _extremes_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sign: torch.Tensor,
                 tiles: list[int], save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                        torch.Tensor, torch.Tensor]:
    n_positions, n_frames, filters, _ = _check(x, weight, bias)
    chosen = Tiles(*tiles)
    value, ties, total, means, m2s, saved = _extremes_outputs(x, weight, chosen, save)
    read = _kernel_input(x, weight.shape[2], weight.shape[3], chosen)
    weight = padded_weight(weight, read.taps_per_row) if read.packed else weight
    taps = weight[0].numel()
    row_stride = saved.shape[3] if save else ALIGNMENT  # (an unused argument without save)
    strides = (*read.strides, weight.stride(0), 1, bias.stride(0), bias.stride(1), row_stride)
    launch(_forward_kernel, (x.shape[0], means.shape[1], _cdiv(filters, chosen.filters)),
           read.x, weight, bias, sign.to(total.dtype).contiguous(), value, ties, total, means, m2s,
           saved if save else value, n_positions, n_frames, filters, taps, *strides,
           BLOCK_T=chosen.frames, BLOCK_C=chosen.filters, BLOCK_K=chosen.taps,
           CELL_STATS=bool(chosen.cell_stats), SAVE=save, **read.constants(), **kernel_constants(x),
           **chosen.launch_options("forward_kernel"))
    return value, ties, total, means, m2s, saved


@_extremes_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sign: torch.Tensor,
      tiles: list[int], save: bool) -> tuple[torch.Tensor, ...]:
    return _extremes_outputs(x, weight, Tiles(*tiles), save)


def forward_partials(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sign: torch.Tensor, save: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor | None]:
    """What the fused branch's forward needs of ``y = relu(conv(x))``, without ``y`` unless ``save``.

    ``x`` ``[B, 1, F, T]`` and ``weight`` ``[C, 1, kh, kw]`` in one dtype; ``bias`` the map
    ``[C, T']`` (any strides; a ``[C]`` bias expanded is fine), in any float dtype; ``sign``
    ``[C]``: the extreme is the min of ``y`` over mel where it is negative, else the max.

    Returns per (b, c, t), ``[B, C, T']``: the extreme (``x``'s dtype), the number of mel positions
    equal to it (int32) and the sum over mel (accumulation dtype); per filter ``[C]``: the mean
    and biased variance of ``y`` over (b, f, t) (float64); that count of elements per filter; and
    with ``save`` (``Tiles.save``, for backward) ``y`` itself ``[B, C, F', T']`` in ``x``'s dtype, else None.
    """
    n_positions, n_frames, _, _ = _check(x, weight, bias)
    tiles = tiles_in_use()
    value, ties, total, means, m2s, saved = torch.ops.lightning_tagging.conv_relu_extremes(
        x, weight, bias, sign, _as_list(tiles), save)
    # Merge the per-program statistics in float64: each program saw n_positions · (its frames) elements.
    tile_starts = torch.arange(means.shape[1], device=x.device) * tiles.frames
    frames_in_tile = (n_frames - tile_starts).clamp(max=tiles.frames)
    counts = (frames_in_tile * n_positions).double()[None, :, None]  # [1, tiles, 1]
    count = x.shape[0] * n_frames * n_positions
    mean = (means.double() * counts).sum(dim=(0, 1)) / count
    m2 = (m2s.double() + counts * (means.double() - mean).square()).sum(dim=(0, 1))
    return value, ties, total, mean, m2 / count, count, saved[..., :n_frames] if save else None


# --- backward ------------------------------------------------------------------------------


@torch.library.custom_op("lightning_tagging::conv_relu_grad", mutates_args=())
def _grad_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, start: int, stop: int, pooled: torch.Tensor,
             k0: torch.Tensor, k1: torch.Tensor, dz: torch.Tensor,
             tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    _, n_frames, filters, _ = _check(x, weight, bias)
    chosen = Tiles(*tiles)
    grad, matched = _grad_outputs(x, weight, start, stop)
    kernel_mels, kernel_steps = weight.shape[2:]
    rows = x
    if packs(chosen, kernel_mels, kernel_steps):  # pack only the mel rows this chunk reads
        rows, start, stop = x[:, :, start:stop + kernel_mels - 1], 0, stop - start
    read = _kernel_input(rows, kernel_mels, kernel_steps, chosen)
    weight = padded_weight(weight, read.taps_per_row) if read.packed else weight
    taps = weight[0].numel()
    strides = (*read.strides, weight.stride(0), 1, bias.stride(0), bias.stride(1), grad.stride(2))
    launch(_grad_kernel, (x.shape[0], _cdiv(n_frames, chosen.frames), _cdiv(filters, chosen.filters)),
           read.x, weight, bias, pooled.contiguous(), k0.contiguous(), k1.contiguous(), dz.contiguous(),
           grad, matched, start, stop, n_frames, filters, taps, *strides,
           BLOCK_T=chosen.frames, BLOCK_C=chosen.filters, BLOCK_K=chosen.taps,
           **read.constants(), **kernel_constants(x), **chosen.launch_options("grad_kernel"))
    return grad, matched


def _padded_rows(x: torch.Tensor, weight: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """An allocated conv output (or its gradient) at mel positions ``start:stop``, with padded rows:
    ``[B, C, stop − start, T' rounded up to 16]``, so that the kernels can store and load its rows
    vectorized (``ALIGNMENT``). Its users see ``[..., :T']``.
    """
    batch, filters, n_frames = x.shape[0], weight.shape[0], x.shape[3] - weight.shape[3] + 1
    return x.new_empty(batch, filters, stop - start, _round_up(n_frames, ALIGNMENT))


def _grad_outputs(x: torch.Tensor, weight: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Allocated outputs of the gradient kernel: grad (:func:`_padded_rows`), matched ``[B, C, T']``."""
    n_frames = x.shape[3] - weight.shape[3] + 1
    return (_padded_rows(x, weight, start, stop)[..., :n_frames],
            x.new_empty(x.shape[0], weight.shape[0], n_frames, dtype=torch.int32))


@_grad_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, start: int, stop: int, *args: Any) -> Any:
    return _grad_outputs(x, weight, start, stop)


def grad_of_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, start: int, stop: int, pooled: torch.Tensor,
    k0: torch.Tensor, k1: torch.Tensor, scaled_dz_at_extreme: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the conv output at mel positions ``start:stop``, ``[B, C, stop − start, T']`` in ``x``'s dtype.

    Recomputes ``y = relu(conv)`` there and returns ``where(y > 0, y·k1 + k0 + [y = pooled]·dz, 0)``
    (``k0``, ``k1`` ``[C]``, ``pooled`` and ``scaled_dz_at_extreme`` ``[B, C, T']``: as
    ``fused_branch._chunk_grad_of_conv``), and per (b, c, t) how many of these positions equal
    ``pooled`` (int32), for the check that the recomputed conv is the forward's.
    """
    return torch.ops.lightning_tagging.conv_relu_grad(x, weight, bias, start, stop, pooled, k0, k1,
                                                       scaled_dz_at_extreme, _as_list(tiles_in_use()))


def _rows_in_order(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` ``[B, C, n, T']`` as the weight gradient kernel reads them: rows of frames in order, any
    distance apart (a copy only if they are not)."""
    _, filters, n_rows, _ = rows.shape
    if rows.stride(3) != 1 or rows.stride()[:3] != (filters * n_rows * rows.stride(2), n_rows * rows.stride(2),
                                                    rows.stride(2)):
        return rows.contiguous()
    return rows


def _launch_weight_grad(x: torch.Tensor, rows: torch.Tensor, start: int, kernel_mels: int, kernel_steps: int,
                        chosen: Tiles, saved: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """The weight gradient's partial sums ``[splits, C, kh·kw]``: from the conv output's gradient ``rows``
    ``[B, C, n, T']`` at mel positions ``start:start + n``; or, with ``saved`` = (pooled, k0, k1, dz,
    sums), from the saved conv output ``rows`` (all positions), its gradient's sums over mel into ``sums``."""
    batch, filters, n_rows, n_frames = rows.shape
    partial = _weight_grad_partial(x, rows, kernel_mels, kernel_steps, chosen)
    if packs(chosen, kernel_mels, kernel_steps):  # pack only the mel rows these rows read
        x, start = x[:, :, start:start + n_rows + kernel_mels - 1], 0
    read = _kernel_input(x, kernel_mels, kernel_steps, chosen)
    taps = packed_taps(kernel_mels, read.taps_per_row) if read.packed else kernel_mels * kernel_steps
    if read.packed:  # the packed taps' sums, of which the zero-padded ones are dropped below
        partial = partial.new_empty(partial.shape[0], filters, taps)
    constants = kernel_constants(x)
    unused = partial  # (pointers that FROM_SAVED=False never reads)
    launch(_weight_grad_kernel, (_cdiv(filters, chosen.wgrad_filters), _cdiv(taps, chosen.wgrad_taps),
                                 partial.shape[0]),
           read.x, rows, partial, *(saved or (unused,) * 5), batch, n_rows, start, n_frames, filters, taps,
           *read.strides, rows.stride(2),
           BLOCK_T=chosen.wgrad_frames, BLOCK_C=chosen.wgrad_filters, BLOCK_K=chosen.wgrad_taps,
           ACC=constants["ACC"], OUT=constants["OUT"], PRECISION=constants["PRECISION"], UPCAST=constants["UPCAST"],
           FROM_SAVED=saved is not None, **read.constants(), **chosen.launch_options("weight_grad_kernel"))
    if read.packed:
        splits = partial.shape[0]
        partial = partial[:, :, :kernel_mels * read.taps_per_row]
        partial = partial.view(splits, filters, kernel_mels, read.taps_per_row)[..., :kernel_steps]
        partial = partial.reshape(splits, filters, kernel_mels * kernel_steps)
    return partial


@torch.library.custom_op("lightning_tagging::conv_weight_grad", mutates_args=())
def _weight_grad_op(x: torch.Tensor, grad: torch.Tensor, start: int, kernel_mels: int, kernel_steps: int,
                    tiles: list[int]) -> torch.Tensor:
    return _launch_weight_grad(x, _rows_in_order(grad), start, kernel_mels, kernel_steps, Tiles(*tiles))


def _weight_grad_partial(x: torch.Tensor, grad: torch.Tensor, kernel_mels: int, kernel_steps: int,
                         tiles: Tiles) -> torch.Tensor:
    """Allocated partial sums ``[splits, C, kh·kw]`` of the weight gradient, one per group of clips."""
    batch, filters = grad.shape[:2]
    splits = min(batch, tiles.wgrad_splits)
    return x.new_empty(splits, filters, kernel_mels * kernel_steps, dtype=accumulation_dtype(x.dtype))


@_weight_grad_op.register_fake
def _(x: torch.Tensor, grad: torch.Tensor, start: int, kernel_mels: int, kernel_steps: int,
      tiles: list[int]) -> torch.Tensor:
    return _weight_grad_partial(x, grad, kernel_mels, kernel_steps, Tiles(*tiles))


def weight_grad(x: torch.Tensor, grad: torch.Tensor, start: int, weight_shape: torch.Size) -> torch.Tensor:
    """``Σ_{b, f, t} grad[b, c, f, t] · x[b, 0, start + f + i, t + j]`` ``[C, 1, kh, kw]``, accumulated in float32/64.

    ``grad`` ``[B, C, rows, T']`` from :func:`grad_of_conv` (rows of frames, any distance apart);
    ``x`` ``[B, 1, F, T]``.
    """
    filters, _, kernel_mels, kernel_steps = weight_shape
    partial = torch.ops.lightning_tagging.conv_weight_grad(x, grad, start, kernel_mels, kernel_steps,
                                                           _as_list(tiles_in_use()))
    return partial.sum(dim=0).view(filters, 1, kernel_mels, kernel_steps)


@torch.library.custom_op("lightning_tagging::conv_weight_grad_saved", mutates_args=())
def _weight_grad_saved_op(x: torch.Tensor, saved: torch.Tensor, pooled: torch.Tensor, k0: torch.Tensor,
                          k1: torch.Tensor, dz: torch.Tensor, kernel_mels: int, kernel_steps: int,
                          tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    sums = _grad_sums_output(x, saved)
    operands = (pooled.contiguous(), k0.contiguous(), k1.contiguous(), dz.contiguous(), sums)
    partial = _launch_weight_grad(x, _rows_in_order(saved), 0, kernel_mels, kernel_steps, Tiles(*tiles), operands)
    return partial, sums


def _grad_sums_output(x: torch.Tensor, saved: torch.Tensor) -> torch.Tensor:
    """The allocated sums over mel of the conv output's gradient, ``[B, C, T']`` in the accumulation dtype."""
    batch, filters, _, n_frames = saved.shape
    return x.new_empty(batch, filters, n_frames, dtype=accumulation_dtype(x.dtype))


@_weight_grad_saved_op.register_fake
def _(x: torch.Tensor, saved: torch.Tensor, pooled: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor,
      dz: torch.Tensor, kernel_mels: int, kernel_steps: int, tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return _weight_grad_partial(x, saved, kernel_mels, kernel_steps, Tiles(*tiles)), _grad_sums_output(x, saved)


def weight_grad_from_saved(
    x: torch.Tensor, saved: torch.Tensor, pooled: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor,
    scaled_dz_at_extreme: torch.Tensor, weight_shape: torch.Size,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight gradient ``[C, 1, kh, kw]`` from the forward's saved ``y`` ``[B, C, F', T']``
    (:func:`forward_partials` with ``save``), and the sum over mel of the conv output's gradient ``[B, C, T']``.

    The conv output's gradient is :func:`grad_of_conv`'s, made from ``y`` inside the kernel instead
    of from a recomputed conv, and never written; its sums over mel give the bias map's gradient.
    ``pooled``, ``k0``, ``k1``, ``scaled_dz_at_extreme`` as for :func:`grad_of_conv`.
    """
    filters, _, kernel_mels, kernel_steps = weight_shape
    partial, sums = torch.ops.lightning_tagging.conv_weight_grad_saved(
        x, saved, pooled, k0, k1, scaled_dz_at_extreme, kernel_mels, kernel_steps, _as_list(tiles_in_use()))
    return partial.sum(dim=0).view(filters, 1, kernel_mels, kernel_steps), sums


# --- FLOPs: two per multiply-add of the conv each kernel computes --------------------------


@register_flop_formula(torch.ops.lightning_tagging.conv_relu_extremes)
def _extremes_flops(x_shape: Any, weight_shape: Any, *args: Any, **kwargs: Any) -> int:
    filters, _, kernel_mels, kernel_steps = weight_shape
    n_positions, n_frames = x_shape[2] - kernel_mels + 1, x_shape[3] - kernel_steps + 1
    return 2 * x_shape[0] * filters * n_positions * n_frames * kernel_mels * kernel_steps


@register_flop_formula(torch.ops.lightning_tagging.conv_relu_grad)
def _grad_flops(x_shape: Any, weight_shape: Any, bias_shape: Any, start: int, stop: int, *args: Any,
                **kwargs: Any) -> int:
    filters, _, kernel_mels, kernel_steps = weight_shape
    return 2 * x_shape[0] * filters * (stop - start) * (x_shape[3] - kernel_steps + 1) * kernel_mels * kernel_steps


@register_flop_formula(torch.ops.lightning_tagging.conv_weight_grad)
def _weight_grad_flops(x_shape: Any, grad_shape: Any, start: int, kernel_mels: int, kernel_steps: int,
                       *args: Any, **kwargs: Any) -> int:
    batch, filters, n_rows, n_frames = grad_shape
    return 2 * batch * filters * n_rows * n_frames * kernel_mels * kernel_steps


@register_flop_formula(torch.ops.lightning_tagging.conv_weight_grad_saved)
def _weight_grad_saved_flops(x_shape: Any, saved_shape: Any, pooled_shape: Any, k0_shape: Any, k1_shape: Any,
                             dz_shape: Any, kernel_mels: int, kernel_steps: int, *args: Any, **kwargs: Any) -> int:
    return _weight_grad_flops(x_shape, saved_shape, 0, kernel_mels, kernel_steps)
