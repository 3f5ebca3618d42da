"""Triton kernels for musicnn's fused front-end branch: the conv computed and reduced in registers.

The conv of one branch is ``conv[b, c, f, t] = bias[c, t] + Σ_{i<kh, j<kw} w[c, i, j] · x[b, f + i, t + j]``
over a valid (unpadded) window: ``x`` ``[B, 1, F, T]`` is padded in time first, ``w`` is
``[C, 1, kh, kw]`` and the bias a map ``[C, T']`` over output frames (the input BatchNorm's
folded shift varies at the padded edges: ``input_bn_fold.py``). Flattening the kernel's taps,
``k = i·kw + j``, makes each mel position's conv a matrix product of a ``[T, kh·kw]`` window
matrix, gathered from ``x`` (which sits in cache), and the ``[kh·kw, C]`` weights: ``tl.dot``,
on tensor cores.

Each program owns one clip and a tile of frames × filters, and walks the mel positions:

- ``forward_kernel`` keeps, per cell, the running max of ``flip·relu(conv)`` (``flip`` = −1
  where BatchNorm's scale is negative: their min), its tie count and the sum over mel; per
  filter, the mean and squared deviations over its cells, merged row by row (Chan et al.). With
  ``Tiles.save`` it also writes ``y = relu(conv)`` for backward; else the conv output is never written.
- ``grad_kernel`` (without ``Tiles.save``) recomputes the conv for a range of mel positions, with
  the same code and so the same bits, and writes the gradient of the conv output:
  ``where(y > 0, k0 + k1·y + [y = pooled]·dz, 0)`` (``fused_branch._chunk_grad_of_conv``).
- ``weight_grad_kernel`` sums ``grad[b, c, f, t] · x[b, f + i, t + j]`` over clips, positions
  and frames for a tile of filters × taps; clips are split among programs whose partial sums
  the caller adds (no atomics: the same sums in the same order every run). With ``Tiles.save``
  it reads the saved ``y`` and computes that gradient itself, as ``grad_kernel`` would.

Loads: Triton vectorizes a load, and pipelines it into shared memory (``cp.async``), only where
it can prove 16-element alignment. A window row of a timbral conv (7 frames per mel row) is not
aligned, so each tap is a scalar gather; with ``Tiles.pack`` the kernels read a packed copy of the
windows (``PACKED``; ``triton_branch.pack_windows``) whose rows are. The conv output's gradient
is written and read in rows 16-aligned apart (``sgr``).

Numbers: products accumulate in float32 (float64 for float64 inputs) and ``relu(conv)`` is
rounded to the input dtype, as a library conv rounds its output. fp32 inputs run as TF32 when
asked (``PRECISION``), as cuDNN's convs do by default.

:func:`compile_for_gpu` compiles them for a GPU architecture on any machine, so a kernel that
would not compile on an H100 fails in CPU tests; ``triton_interpreter.py`` runs them on a CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

try:  # Triton comes with torch's Linux CUDA wheels; elsewhere these kernels are unavailable.
    import triton
    import triton.language as tl
    import triton.language.core as tl_core  # noqa: F401 (the interpreter patches the modules kernels' globals name)
except ImportError:  # pragma: no cover - exercised only where Triton is missing
    triton = None

# Tile sizes: frames × filters per program, and taps per matrix-product step (every dimension of a
# Triton tile must be a power of two and at least 16 for tl.dot). The weight gradient's programs:
# filters × taps each, summing over frames ``wgrad_frames`` at a time; the batch is split among at
# most ``wgrad_splits`` programs per tile, whose partial sums are then added.
@dataclass(frozen=True)
class Tiles:
    """How the kernels tile their work, and their launch settings (warps per program, pipeline stages).

    Every choice computes the same function; sums run in another order, so results differ in the
    last bits between choices (never between runs of one choice). ``lt bench frontend --tiles``
    times choices against each other on a GPU; :func:`compile_for_gpu` shows their registers and
    spills on any machine. Written ``t64c64k16w8s3/wg64x32x64s32w8`` (:attr:`label`, :meth:`parse`).
    """

    frames: int = 64  # BLOCK_T of the forward and gradient kernels
    filters: int = 64  # BLOCK_C
    taps: int = 16  # BLOCK_K: taps per tl.dot step
    warps: int = 8
    stages: int = 3  # software-pipelining depth of the loads in the tap loops (Triton's default on CUDA)
    wgrad_filters: int = 64  # the weight gradient kernel's BLOCK_C, BLOCK_K and BLOCK_T
    wgrad_taps: int = 32
    wgrad_frames: int = 64
    wgrad_splits: int = 32
    wgrad_warps: int = 8
    # Taps per mel row of a packed copy of the input's windows, 0 for none. With 8, a conv at most 8
    # frames wide and taller than one band (musicnn's timbral ones: 7 frames) reads a copy
    # ``[B, T', F·8]`` whose window rows are contiguous and 16-byte aligned: one vector load per 8
    # taps instead of a gather per tap, at 8/7 of the taps (the 8th weight is zero).
    pack: int = 0
    # 1: the forward kernel keeps BatchNorm's statistics per cell (frame, filter) over the mel
    # positions (Welford) and merges them over frames once, at the end, instead of two reductions
    # over frames at every mel position: one more accumulator per cell for fewer cross-warp steps.
    cell_stats: int = 0
    # 1: the forward kernel also writes relu(conv), in the input dtype, rows 16-aligned (``syr``), and
    # the weight gradient kernel computes the conv output's gradient from it: no conv recomputed in
    # backward, and no gradient kernel, for the memory of one conv output per branch until backward
    # (musicnn, batch 256, bf16: 3.2 GB for its five branches; fp32: twice that).
    save: int = 0

    def __post_init__(self) -> None:
        dims = {"frames": self.frames, "filters": self.filters, "taps": self.taps,
                "wgrad_filters": self.wgrad_filters, "wgrad_taps": self.wgrad_taps, "wgrad_frames": self.wgrad_frames}
        for name, size in dims.items():
            if size < 16 or size & (size - 1):
                raise ValueError(f"Tiles.{name} must be a power of two ≥ 16 (a tl.dot operand), got {size}")
        for name, warps in (("warps", self.warps), ("wgrad_warps", self.wgrad_warps)):
            if warps not in (1, 2, 4, 8, 16, 32):
                raise ValueError(f"Tiles.{name} must be a power of two ≤ 32, got {warps}")
        if self.pack not in (0, 8, 16):
            raise ValueError(f"Tiles.pack must be 0 (off), 8 or 16, got {self.pack}")
        for name, flag in (("cell_stats", self.cell_stats), ("save", self.save)):
            if flag not in (0, 1):
                raise ValueError(f"Tiles.{name} must be 0 or 1, got {flag}")
        if self.stages < 1 or self.wgrad_splits < 1:
            raise ValueError(f"Tiles.stages and Tiles.wgrad_splits must be ≥ 1, got {self.stages}, {self.wgrad_splits}")

    @property
    def label(self) -> str:
        return (f"t{self.frames}c{self.filters}k{self.taps}w{self.warps}s{self.stages}/"
                f"wg{self.wgrad_filters}x{self.wgrad_taps}x{self.wgrad_frames}s{self.wgrad_splits}w{self.wgrad_warps}"
                + (f"/p{self.pack}" if self.pack else "") + ("/cs" if self.cell_stats else "")
                + ("/sv" if self.save else ""))

    @classmethod
    def parse(cls, label: str) -> Tiles:
        """The inverse of :attr:`label`; a clear error for anything else."""
        match = _TILES_LABEL.fullmatch(label.strip())
        if match is None:
            raise ValueError(f"tiles {label!r}: expected the form {cls().label!r}, then optionally "
                             "'/p8' (or '/p16'), '/cs', '/sv' in that order")
        *sizes, pack, cell_stats, save = match.groups()
        return cls(*(int(size) for size in sizes), pack=int(pack or 0), cell_stats=int(cell_stats is not None),
                   save=int(save is not None))

    def launch_options(self, kernel: str) -> dict[str, int]:
        """Triton's launch options for ``kernel`` (a name in this module)."""
        warps = self.wgrad_warps if kernel == "weight_grad_kernel" else self.warps
        return {"num_warps": warps, "num_stages": self.stages}


_TILES_LABEL = re.compile(r"t(\d+)c(\d+)k(\d+)w(\d+)s(\d+)/wg(\d+)x(\d+)x(\d+)s(\d+)w(\d+)(?:/p(\d+))?(/cs)?(/sv)?")

# The fastest choice timed on an H200 (2026-11-26, `lt bench frontend`, musicnn's front-end, batch
# 256, training clips/s in bf16; docs/performance.md): packed windows, per-cell statistics, the conv
# output saved for backward, 32 taps per step; the weight gradient in 64 filters × 128 taps × 32 frames,
# its batch split 128 ways (2 clips per program at batch 256). 8,540 clips/s, against 3,413 for the
# first choice (``Tiles()``: 16 taps, recompute, 64 × 32 × 64, 32 splits) in the same run's sweep (in
# fp32 the whole model trained at 5,000 clips/s with the neighbour 64 × 64 × 32 weight gradient, and
# the first choice's front-end at 3,189). ptxas (sm_90, `compile_for_gpu`) spills no registers in bf16
# and at most 64 bytes per thread in fp32 (TF32, the forward kernel of a 128-frame temporal conv).
DEFAULT_TILES = Tiles(taps=32, wgrad_taps=128, wgrad_frames=32, wgrad_splits=128, pack=8, cell_stats=1, save=1)

# A tile choice for a whole process (a training run, `lt bench`), without a code change: a label
# such as ``t32c32k16w4s3/wg64x32x64s32w8``. DDP ranks and subprocesses inherit it.
TILES_VARIABLE = "LT_TRITON_TILES"


def tiles_from_environment() -> Tiles:
    """The tiles :data:`TILES_VARIABLE` names, or :data:`DEFAULT_TILES` where it is unset or empty."""
    label = os.environ.get(TILES_VARIABLE, "").strip()
    if not label:
        return DEFAULT_TILES
    try:
        return Tiles.parse(label)
    except ValueError as error:
        raise ValueError(f"{TILES_VARIABLE}={label!r}: {error}") from None


_tiles_in_use = [tiles_from_environment()]


def tiles_in_use() -> Tiles:
    """The tiles the next launches use: :data:`DEFAULT_TILES`, or those of :data:`TILES_VARIABLE` when
    the module was imported, unless :func:`using_tiles` says otherwise."""
    return _tiles_in_use[-1]


@contextmanager
def using_tiles(tiles: Tiles) -> Iterator[None]:
    """Launch the kernels with ``tiles`` inside this block (benchmarks; the function is the same)."""
    _tiles_in_use.append(tiles)
    try:
        yield
    finally:
        _tiles_in_use.pop()


def available() -> bool:
    """Whether Triton is importable (it is wherever torch's CUDA wheels for Linux are installed)."""
    return triton is not None


def require_triton() -> None:
    """A clear error where Triton is missing."""
    if triton is None:
        from lightning_tagging.errors import UserError

        raise UserError("conv_impl 'fused_triton' needs Triton (installed with torch's CUDA wheels on Linux); "
                        "use 'fused' or 'mel_windows'")


if triton is not None:

    @triton.jit
    def _rounded(v, OUT: tl.constexpr, ACC: tl.constexpr, EMULATED: tl.constexpr):
        """``v`` rounded to ``OUT`` (to nearest, ties to even), held as ``ACC``.

        ``EMULATED`` (Triton's interpreter, bf16): the interpreter's float32 → bf16 cast truncates
        instead, which biased means and gradients in tests; round the bits here as GPUs do.
        """
        if EMULATED:
            bits = v.to(tl.uint32, bitcast=True)
            bits = (bits + (((bits >> 16) & 1) + 0x7FFF)) & 0xFFFF0000
            return bits.to(tl.float32, bitcast=True)
        else:
            return v.to(OUT).to(ACC)

    @triton.jit
    def _conv_output_grad(y, at_extreme, dz, k0, k1, OUT: tl.constexpr, ACC: tl.constexpr, EMULATED: tl.constexpr):
        """The gradient of the conv output where ``relu(conv)`` is ``y``, rounded to ``OUT`` and held as ``ACC``:
        ``where(y > 0, k0 + k1·y + [at_extreme]·dz, 0)`` (``fused_branch._chunk_grad_of_conv``). The grad
        kernel and the weight gradient from a saved ``y`` both call it, so both compute the same bits.
        """
        grad = k0 + y * k1 + tl.where(at_extreme, dz, 0.0)
        return _rounded(tl.where(y > 0, grad, 0.0), OUT, ACC, EMULATED)  # ReLU's gate: y > 0 where the conv is

    @triton.jit
    def _windows(x_ptr, b, f, t, k, t_ok, k_ok, sxb, sxf, sxt, KW: tl.constexpr, PACKED: tl.constexpr):
        """The window matrix ``[frames t, taps k]`` of mel position ``f``: ``x[b, f + k // KW, t + k % KW]``.

        ``PACKED``: ``x`` is the packed copy ``[B, T', F·KW]`` (``Tiles.pack``), where that tap is at
        ``f·KW + k`` of row ``t``: contiguous and aligned along ``k``.
        """
        if PACKED:
            return tl.load(x_ptr + b * sxb + t[:, None] * sxt + (f * KW + k)[None, :],
                           mask=t_ok[:, None] & k_ok[None, :], other=0.0)
        else:
            rows = f + k // KW
            cols = t[:, None] + (k % KW)[None, :]
            return tl.load(x_ptr + b * sxb + rows[None, :] * sxf + cols * sxt, mask=t_ok[:, None] & k_ok[None, :],
                           other=0.0)

    @triton.jit
    def _conv_relu_row(x_ptr, w_ptr, bias, b, f, t, c, t_ok, c_ok, K, sxb, sxf, sxt, swc, swk,
                       KW: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                       ACC: tl.constexpr, OUT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                       PACKED: tl.constexpr):
        """``relu(conv)`` at mel position ``f``, frames ``t`` × filters ``c``: rounded to ``OUT``, held as ``ACC``."""
        acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=ACC)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_ok = k < K
            a = _windows(x_ptr, b, f, t, k, t_ok, k_ok, sxb, sxf, sxt, KW, PACKED)
            w = tl.load(w_ptr + c[None, :] * swc + k[:, None] * swk, mask=k_ok[:, None] & c_ok[None, :], other=0.0)
            if UPCAST:  # the interpreter's tl.dot mishandles bf16 operands (exact in float32)
                a, w = a.to(ACC), w.to(ACC)
            acc = tl.dot(a, w, acc, input_precision=PRECISION, out_dtype=ACC)
        return _rounded(tl.maximum(acc + bias, 0.0), OUT, ACC, UPCAST)

    @triton.jit
    def forward_kernel(x_ptr, w_ptr, bias_ptr, sign_ptr, value_ptr, ties_ptr, total_ptr, mean_ptr, m2_ptr, y_ptr,
                       F_OUT, T_OUT, C, K, sxb, sxf, sxt, swc, swk, sbc, sbt, syr,
                       KW: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                       ACC: tl.constexpr, OUT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                       PACKED: tl.constexpr, CELL_STATS: tl.constexpr, SAVE: tl.constexpr):
        """One program: clip ``b``, a tile of frames × filters, every mel position (see forward_partials).

        ``SAVE``: also write ``relu(conv)`` to ``y`` ``[B, C, F', T']``, rows ``syr`` (``T'`` rounded up
        to 16) apart and stored whole, zeros past ``T'`` (as the grad kernel stores its rows).
        """
        b = tl.program_id(0)
        tile_t = tl.program_id(1)
        t = tile_t * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        t_ok, c_ok = t < T_OUT, c < C
        valid = t_ok[:, None] & c_ok[None, :]
        bias = tl.load(bias_ptr + c[None, :] * sbc + t[:, None] * sbt, mask=valid, other=0.0).to(ACC)
        # Pool the max of flip·y: the min of y for filters whose BatchNorm scale is negative.
        flip = tl.where(tl.load(sign_ptr + c, mask=c_ok, other=1.0) < 0, -1.0, 1.0).to(ACC)
        best = tl.full((BLOCK_T, BLOCK_C), float("-inf"), ACC)
        ties = tl.zeros((BLOCK_T, BLOCK_C), tl.int32)
        total = tl.zeros((BLOCK_T, BLOCK_C), ACC)
        # Per-filter mean and sum of squared deviations over (mel, frames): merged row by row (Chan et
        # al.), or with CELL_STATS per cell over mel (Welford; m2_cell) and over frames at the end.
        mean = tl.zeros((BLOCK_C,), ACC)
        m2 = tl.zeros((BLOCK_C,), ACC)
        m2_cell = tl.zeros((BLOCK_T, BLOCK_C), ACC)
        n_row = tl.sum(t_ok.to(ACC), axis=0)
        zero = n_row * 0  # (plus an int: that int as an ACC scalar, compiled and interpreted alike)
        for f in range(0, F_OUT):
            y = _conv_relu_row(x_ptr, w_ptr, bias, b, f, t, c, t_ok, c_ok, K, sxb, sxf, sxt, swc, swk,
                               KW, BLOCK_T, BLOCK_C, BLOCK_K, ACC, OUT, PRECISION, UPCAST, PACKED)
            if SAVE:  # (int64: the saved outputs of a large batch pass 2^31 elements)
                rows = ((c[None, :].to(tl.int64) + b * C) * F_OUT + f) * syr + t[:, None]
                tl.store(y_ptr + rows, y.to(OUT), mask=(t < syr)[:, None] & c_ok[None, :])
            v = y * flip[None, :]
            ties = tl.where(v > best, 1, tl.where(v == best, ties + 1, ties))
            best = tl.maximum(best, v)
            if CELL_STATS:  # (one reciprocal per row, not a division per element)
                before, after = 1.0 / tl.maximum(zero + f, 1.0), 1.0 / (zero + f + 1)
                delta = y - total * before  # from the cell's mean of the rows before
                total += y
                m2_cell += delta * (y - total * after)
            else:
                total += y
                row_mean = tl.sum(tl.where(t_ok[:, None], y, 0.0), axis=0) / n_row
                deviation = tl.where(t_ok[:, None], y - row_mean[None, :], 0.0)
                seen = (f * n_row).to(ACC)
                delta = row_mean - mean
                mean += delta * (n_row / (seen + n_row))
                m2 += tl.sum(deviation * deviation, axis=0) + delta * delta * (seen * n_row / (seen + n_row))
        if CELL_STATS:  # n_row cells of F_OUT rows each
            rows = zero + F_OUT
            cell_mean = total / rows
            mean = tl.sum(tl.where(t_ok[:, None], cell_mean, 0.0), axis=0) / n_row
            spread = tl.where(t_ok[:, None], cell_mean - mean[None, :], 0.0)
            m2 = tl.sum(tl.where(t_ok[:, None], m2_cell, 0.0), axis=0) + rows * tl.sum(spread * spread, axis=0)
        cells = b * C * T_OUT + c[None, :] * T_OUT + t[:, None]  # [B, C, T'] outputs
        tl.store(value_ptr + cells, (best * flip[None, :]).to(OUT), mask=valid)
        tl.store(ties_ptr + cells, ties, mask=valid)
        tl.store(total_ptr + cells, total, mask=valid)
        partial = (b * tl.num_programs(1) + tile_t) * C + c  # [B, tiles of T', C] statistics
        tl.store(mean_ptr + partial, mean, mask=c_ok)
        tl.store(m2_ptr + partial, m2, mask=c_ok)

    @triton.jit
    def grad_kernel(x_ptr, w_ptr, bias_ptr, pooled_ptr, k0_ptr, k1_ptr, dz_ptr, grad_ptr, matched_ptr,
                    F_START, F_STOP, T_OUT, C, K, sxb, sxf, sxt, swc, swk, sbc, sbt, sgr,
                    KW: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                    ACC: tl.constexpr, OUT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                    PACKED: tl.constexpr):
        """One program: clip ``b``, a tile of frames × filters, mel positions ``F_START:F_STOP`` (see grad_of_conv).

        ``sgr``: the gradient's row stride, ``T'`` rounded up to 16 so that its rows are aligned. The
        rows are stored whole: past ``T'`` the inputs and bias read as 0, so the conv, its ReLU and
        the gradient are 0 there, and a store masked only at 16-element boundaries is vectorized.
        """
        b = tl.program_id(0)
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        t_ok, c_ok = t < T_OUT, c < C
        valid = t_ok[:, None] & c_ok[None, :]
        bias = tl.load(bias_ptr + c[None, :] * sbc + t[:, None] * sbt, mask=valid, other=0.0).to(ACC)
        cells = b * C * T_OUT + c[None, :] * T_OUT + t[:, None]
        pooled = tl.load(pooled_ptr + cells, mask=valid, other=float("nan")).to(ACC)
        dz = tl.load(dz_ptr + cells, mask=valid, other=0.0).to(ACC)
        k0 = tl.load(k0_ptr + c, mask=c_ok, other=0.0).to(ACC)
        k1 = tl.load(k1_ptr + c, mask=c_ok, other=0.0).to(ACC)
        matched = tl.zeros((BLOCK_T, BLOCK_C), tl.int32)
        whole_rows = (t < sgr)[:, None] & c_ok[None, :]
        n_rows = F_STOP - F_START
        for f in range(F_START, F_STOP):
            y = _conv_relu_row(x_ptr, w_ptr, bias, b, f, t, c, t_ok, c_ok, K, sxb, sxf, sxt, swc, swk,
                               KW, BLOCK_T, BLOCK_C, BLOCK_K, ACC, OUT, PRECISION, UPCAST, PACKED)
            at_extreme = y == pooled
            matched += at_extreme.to(tl.int32)
            grad = _conv_output_grad(y, at_extreme, dz, k0[None, :], k1[None, :], OUT, ACC, UPCAST)
            rows = ((b * C + c[None, :]) * n_rows + (f - F_START)) * sgr + t[:, None]  # [B, C, rows, T']
            tl.store(grad_ptr + rows, grad.to(OUT), mask=whole_rows)
        tl.store(matched_ptr + cells, matched, mask=valid)

    @triton.jit
    def weight_grad_kernel(x_ptr, grad_ptr, out_ptr, pooled_ptr, k0_ptr, k1_ptr, dz_ptr, sums_ptr,
                           B, N_ROWS, F_START, T_OUT, C, K, sxb, sxf, sxt, sgr,
                           KW: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                           ACC: tl.constexpr, OUT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                           PACKED: tl.constexpr, FROM_SAVED: tl.constexpr):
        """One program: filters × taps tile of ``Σ_{b, f, t} grad[b, c, f, t] · x[b, f + i, t + j]`` over its clips.

        ``FROM_SAVED``: ``grad_ptr`` holds the forward's saved ``y = relu(conv)`` (``Tiles.save``), and
        the gradient is computed from it here, as the grad kernel computes it from its recomputed
        ``y`` (``pooled``, ``dz`` ``[B, C, T']``, ``k0``, ``k1`` ``[C]``); the programs of the first tile
        of taps also write its sum over mel positions to ``sums`` ``[B, C, T']`` (the bias map's gradient).
        """
        c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        split, n_splits = tl.program_id(2), tl.num_programs(2)
        c_ok, k_ok = c < C, k < K
        if FROM_SAVED:
            k0 = tl.load(k0_ptr + c, mask=c_ok, other=0.0).to(ACC)
            k1 = tl.load(k1_ptr + c, mask=c_ok, other=0.0).to(ACC)
        acc = tl.zeros((BLOCK_C, BLOCK_K), dtype=ACC)
        for b in range(split, B, n_splits):
            first_row = (c[:, None].to(tl.int64) + b * C) * N_ROWS  # [C, 1] (int64: see the forward kernel)
            for t0 in range(0, T_OUT, BLOCK_T):
                t = t0 + tl.arange(0, BLOCK_T)
                t_ok = t < T_OUT
                if FROM_SAVED:  # the same for every mel position: loaded once per frame tile
                    cells = b * C * T_OUT + c[:, None] * T_OUT + t[None, :]
                    valid = c_ok[:, None] & t_ok[None, :]
                    pooled = tl.load(pooled_ptr + cells, mask=valid, other=float("nan")).to(ACC)
                    dz = tl.load(dz_ptr + cells, mask=valid, other=0.0).to(ACC)
                    row_sum = tl.zeros((BLOCK_C, BLOCK_T), ACC)
                for f in range(0, N_ROWS):
                    # (the rows are read whole, as the grad kernel stores them: 0 past T')
                    g = tl.load(grad_ptr + (first_row + f) * sgr + t[None, :],
                                mask=c_ok[:, None] & (t < sgr)[None, :], other=0.0)
                    if FROM_SAVED:
                        y = g.to(ACC)
                        grad = _conv_output_grad(y, y == pooled, dz, k0[:, None], k1[:, None], OUT, ACC, UPCAST)
                        row_sum += grad
                        g = grad.to(OUT)
                    a = _windows(x_ptr, b, F_START + f, t, k, t_ok, k_ok, sxb, sxf, sxt, KW, PACKED)
                    if UPCAST:
                        g, a = g.to(ACC), a.to(ACC)
                    acc = tl.dot(g, a, acc, input_precision=PRECISION, out_dtype=ACC)
                if FROM_SAVED:
                    tl.store(sums_ptr + cells, row_sum, mask=valid & (tl.program_id(1) == 0))
        tl.store(out_ptr + (split * C + c[:, None]) * K + k[None, :], acc, mask=c_ok[:, None] & k_ok[None, :])


# The input dtypes the kernels take, by their names in triton.language.
TRITON_DTYPES = {torch.float64: "float64", torch.float32: "float32", torch.bfloat16: "bfloat16",
                 torch.float16: "float16"}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the kernels sum in for ``dtype`` inputs: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def kernel_constants(x: torch.Tensor) -> dict[str, Any]:
    """The dtype-dependent compile-time constants: accumulator, output rounding, tl.dot precision."""
    acc = accumulation_dtype(x.dtype)
    if x.dtype == torch.float64 or (x.dtype == torch.float32 and not torch.backends.cudnn.allow_tf32):
        precision = "ieee"
    else:
        precision = "tf32"  # (ignored for bf16/fp16 operands)
    return {
        "ACC": getattr(tl, TRITON_DTYPES[acc]),
        "OUT": getattr(tl, TRITON_DTYPES[x.dtype]),
        "PRECISION": precision,
        # On a CPU (the interpreter), bf16 works around two of its flaws: see tl.dot's operands and _rounded.
        "UPCAST": x.device.type == "cpu" and x.dtype == torch.bfloat16,
    }


# What each kernel's pointers point to: the input dtype, the accumulator's, or int32.
_POINTER_DTYPES = {
    "forward_kernel": {"x_ptr": "in", "w_ptr": "in", "bias_ptr": "acc", "sign_ptr": "acc", "value_ptr": "in",
                       "ties_ptr": "i32", "total_ptr": "acc", "mean_ptr": "acc", "m2_ptr": "acc", "y_ptr": "in"},
    "grad_kernel": {"x_ptr": "in", "w_ptr": "in", "bias_ptr": "acc", "pooled_ptr": "in", "k0_ptr": "acc",
                    "k1_ptr": "acc", "dz_ptr": "acc", "grad_ptr": "in", "matched_ptr": "i32"},
    "weight_grad_kernel": {"x_ptr": "in", "grad_ptr": "in", "out_ptr": "acc", "pooled_ptr": "in", "k0_ptr": "acc",
                           "k1_ptr": "acc", "dz_ptr": "acc", "sums_ptr": "acc"},
}
_SHORT_NAMES = {torch.float64: "fp64", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def compile_for_gpu(dtype: torch.dtype, arch: int = 90, kernel_width: int = 7, tf32: bool = True,
                    tiles: Tiles | None = None) -> dict[str, dict[str, int]]:
    """Compile every kernel for an NVIDIA GPU of compute capability ``arch`` (90: H100/H200) without one.

    What a launch on that GPU would compile for ``dtype`` inputs and ``tiles`` (default: those in
    use), down to machine code (Triton's bundled ``ptxas``): a kernel that does not compile, or needs
    more shared memory than the GPU has, fails here, on any machine. Returns per kernel its shared
    memory (bytes), warps, the asynchronous copies to shared memory in its code (``cp.async``: the
    loads Triton pipelines; it does so only for loads it can vectorize), and what ``ptxas -v``
    reports of registers per thread and register spills (bytes stored per thread).
    """
    require_triton()
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    tiles = tiles or tiles_in_use()
    acc = accumulation_dtype(dtype)
    precision = "ieee" if dtype == torch.float64 or (dtype == torch.float32 and not tf32) else "tf32"
    packed = bool(tiles.pack) and kernel_width <= tiles.pack  # (as for a kernel taller than one band)
    common = {"KW": tiles.pack if packed else kernel_width, "ACC": getattr(tl, TRITON_DTYPES[acc]),
              "PRECISION": precision, "UPCAST": False, "PACKED": packed}
    conv = {**common, "BLOCK_T": tiles.frames, "BLOCK_C": tiles.filters, "BLOCK_K": tiles.taps,
            "OUT": getattr(tl, TRITON_DTYPES[dtype]), "swk": 1}  # (a launch specializes an int 1 so)
    constants = {"forward_kernel": {**conv, "CELL_STATS": bool(tiles.cell_stats), "SAVE": bool(tiles.save)},
                 "grad_kernel": conv,
                 "weight_grad_kernel": {**common, "BLOCK_T": tiles.wgrad_frames, "BLOCK_C": tiles.wgrad_filters,
                                        "BLOCK_K": tiles.wgrad_taps, "OUT": getattr(tl, TRITON_DTYPES[dtype]),
                                        "FROM_SAVED": bool(tiles.save)}}
    names = {"in": _SHORT_NAMES[dtype], "acc": _SHORT_NAMES[acc], "i32": "i32"}
    # What a launch learns of its arguments' divisibility by 16: every tensor's address, the conv
    # output gradient's and the saved conv output's row strides, and with packed windows their strides
    # and taps (triton_branch.ALIGNMENT), which is what lets those loads be vectorized and pipelined.
    divisible = {"sgr", "syr"} | ({"sxb", "sxt", "swc", "K"} if packed else set())
    found = {}
    for name, pointers in _POINTER_DTYPES.items():
        kernel = globals()[name]
        signature = {arg: "constexpr" if arg in constants[name] else
                     ("*" + names[pointers[arg]] if arg in pointers else "i32") for arg in kernel.arg_names}
        attrs = {(index,): [["tt.divisibility", 16]] for index, arg in enumerate(kernel.arg_names)
                 if arg in pointers or arg in divisible}
        compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constants[name], attrs=attrs),
                                  target=GPUTarget("cuda", arch, 32), options=tiles.launch_options(name))
        ptx = compiled.asm["ptx"]
        found[name] = {"shared_bytes": compiled.metadata.shared, "warps": compiled.metadata.num_warps,
                       "async_copies": len(re.findall(r"\bcp\.async\.c[ag]\.shared\.global\b", ptx)),
                       **_ptxas_usage(ptx, arch)}
    return found


def _ptxas_usage(ptx: str, arch: int) -> dict[str, int]:
    """Registers per thread and spilled bytes per thread of ``ptx``, from Triton's bundled ``ptxas -v``."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        suffix = "a" if arch >= 90 else ""  # (Triton targets sm_90a on Hopper)
        report = subprocess.run([str(ptxas), f"-arch=sm_{arch}{suffix}", "-v", str(source), "-o", os.devnull],
                                capture_output=True, text=True, check=True)
    text = report.stdout + report.stderr
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    return {"registers": int(registers.group(1)) if registers else -1,
            "spill_bytes": int(spills.group(1)) if spills else 0}
