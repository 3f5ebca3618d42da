"""The Triton kernels' tile choices (``triton_kernels.Tiles``) all compute the same function.

``lt bench frontend --tiles candidates`` times the choices in ``bench/frontend.py`` against each
other on a GPU; here, on a CPU (Triton's interpreter), each must give the default's results in
float64 on a problem that no tile divides evenly, and compile for an H100 within its shared
memory and without register spills in bf16.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from test_triton_branch import H100_SHARED_MEMORY_BYTES

from lightning_tagging.bench.frontend import CANDIDATE_TILES
from lightning_tagging.models import triton_branch, triton_kernels
from lightning_tagging.models.triton_kernels import DEFAULT_TILES, Tiles, tiles_in_use, using_tiles

# Small tiles and few splits: more programs on this small problem, and each loop's remainder masked.
SMALL_TILES = Tiles(frames=16, filters=16, taps=16, warps=1, stages=1, wgrad_filters=16, wgrad_taps=16,
                    wgrad_frames=16, wgrad_splits=1, wgrad_warps=1)


def test_labels_round_trip_and_bad_tiles_are_clear_errors() -> None:
    for choice in (*CANDIDATE_TILES, SMALL_TILES):
        assert Tiles.parse(choice.label) == choice
    assert len(set(CANDIDATE_TILES)) == len(CANDIDATE_TILES) and CANDIDATE_TILES[0] == DEFAULT_TILES
    with pytest.raises(ValueError, match="expected the form 't64c64k16w8s3/wg64x32x64s32w8'"):
        Tiles.parse("t64c64")
    with pytest.raises(ValueError, match=r"Tiles\.frames must be a power of two ≥ 16"):
        Tiles(frames=48)
    with pytest.raises(ValueError, match=r"Tiles\.wgrad_taps must be a power of two ≥ 16"):
        Tiles(wgrad_taps=8)
    with pytest.raises(ValueError, match=r"Tiles\.warps must be a power of two ≤ 32"):
        Tiles(warps=3)


def _tiles_of_a_process_with(label: str) -> subprocess.CompletedProcess[str]:
    """A new Python process that imports the kernels with ``LT_TRITON_TILES=label`` and prints its tiles."""
    code = "from lightning_tagging.models.triton_kernels import tiles_in_use; print(tiles_in_use().label)"
    environment = {**os.environ, triton_kernels.TILES_VARIABLE: label}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120)


def test_the_environment_chooses_a_processs_tiles_and_a_bad_label_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    choice = Tiles(frames=32, filters=32, warps=4, save=1)
    assert choice != DEFAULT_TILES
    chosen = _tiles_of_a_process_with(choice.label)  # (read when the module is imported)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == choice.label
    monkeypatch.setenv(triton_kernels.TILES_VARIABLE, "")
    assert triton_kernels.tiles_from_environment() == DEFAULT_TILES
    # What the import above reads, here in this process (an import would raise it in a new one).
    monkeypatch.setenv(triton_kernels.TILES_VARIABLE, "t48c64")
    with pytest.raises(ValueError, match=re.escape("LT_TRITON_TILES='t48c64': tiles 't48c64': expected the form")):
        triton_kernels.tiles_from_environment()


def test_using_tiles_nests_and_restores_after_an_error() -> None:
    assert tiles_in_use() == DEFAULT_TILES
    with using_tiles(SMALL_TILES):
        assert tiles_in_use() == SMALL_TILES
        with pytest.raises(RuntimeError), using_tiles(CANDIDATE_TILES[1]):
            assert tiles_in_use() == CANDIDATE_TILES[1]
            raise RuntimeError
        assert tiles_in_use() == SMALL_TILES
    assert tiles_in_use() == DEFAULT_TILES


def kernel_results(tiles: Tiles, device: torch.device, kernel: tuple[int, int] = (5, 7)) -> dict[str, torch.Tensor]:
    """Every kernel's outputs, float64, with ``tiles``, on ``device`` (returned on the CPU): 40 filters,
    37 frames, 6 mel positions, 5×7 taps (so no tile divides frames, filters or taps evenly), 3 clips;
    or a ``kernel`` of other mel bands × frames, over as many more mel bands and frames."""
    kernel_mels, kernel_steps = kernel
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 5 + kernel_mels, 36 + kernel_steps, dtype=torch.float64, generator=generator)
    weight = torch.randn(40, 1, kernel_mels, kernel_steps, dtype=torch.float64, generator=generator)
    bias = torch.randn(40, 37, dtype=torch.float64, generator=generator) * 0.1
    sign = torch.where(torch.arange(40) % 3 == 0, -1.0, 1.0).double()
    k0, k1 = torch.randn(2, 40, dtype=torch.float64, generator=generator)
    dz = torch.randn(3, 40, 37, dtype=torch.float64, generator=generator)
    x, weight, bias, sign, k0, k1, dz = (t.to(device) for t in (x, weight, bias, sign, k0, k1, dz))
    # Deterministic mode fills new tensors' memory with NaN, so any element a kernel leaves unwritten shows.
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with using_tiles(tiles):
            value, ties, total, mean, var, count, _ = triton_branch.forward_partials(x, weight, bias, sign)
            rows = 5 if kernel_mels < 6 else 2
            grad, matched = triton_branch.grad_of_conv(x, weight, bias, 1, rows, value, k0, k1, dz)
            weight_grad = triton_branch.weight_grad(x, grad, 1, weight.shape)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    # grad's rows are 16-aligned views of wider rows, whose tails the kernel fills with zeros (the
    # weight gradient reads whole rows): those tails, [B, C, rows, row stride − T'].
    assert grad.stride(2) % triton_branch.ALIGNMENT == 0 and grad.stride(2) > grad.shape[3] == 37
    tails = grad.as_strided((*grad.shape[:3], grad.stride(2) - grad.shape[3]), grad.stride(),
                            grad.storage_offset() + grad.shape[3])
    found = {"value": value, "ties": ties, "total": total, "mean": mean, "var": var, "count": torch.tensor(count),
             "grad": grad, "matched": matched, "grad_tails": tails, "weight_grad": weight_grad, "x": x,
             "weight": weight, "bias": bias, "sign": sign}
    return {name: tensor.cpu() for name, tensor in found.items()}


@pytest.mark.parametrize("tiles", [*CANDIDATE_TILES[1:], SMALL_TILES], ids=lambda tiles: tiles.label)
def test_every_tile_choice_computes_what_the_default_computes(tiles: Tiles, device: torch.device) -> None:
    """(On a GPU, scripts/device-bench.sh runs this with each choice compiled.)"""
    expected, found = kernel_results(DEFAULT_TILES, device), kernel_results(tiles, device)
    for name in ("ties", "matched", "count"):  # counts: exactly
        assert torch.equal(found[name], expected[name]), name
    assert not found["grad_tails"].any() and not expected["grad_tails"].any()
    for name in ("value", "total", "mean", "var", "grad", "weight_grad"):
        torch.testing.assert_close(found[name], expected[name], rtol=1e-12, atol=1e-12, msg=name)
    # And the default against the library: the extreme over mel of relu(conv + bias), flipped by sign.
    y = F.relu(F.conv2d(found["x"], found["weight"]) + found["bias"][None, :, None, :])
    flip = found["sign"][None, :, None, None]
    torch.testing.assert_close(found["value"], (y * flip).amax(dim=2) * flip[..., 0], rtol=1e-12, atol=1e-12)


SAVING = Tiles(save=1, wgrad_splits=1)  # (one program per tile walks every clip)
# (tiles, kernel, dtype): a packed timbral kernel and a temporal one; and every candidate that saves,
# on a packed timbral kernel (their weight gradients take 32 of the 37 frames at a time, so they walk
# two tiles of frames, each reloading what it needs of the pooled extremes).
SAVING_CASES = [(SAVING, (5, 7), torch.float64), (SAVING, (1, 9), torch.float64), (SAVING, (5, 7), torch.bfloat16),
                *((tiles, (5, 7), torch.float64) for tiles in CANDIDATE_TILES if tiles.save and tiles != SAVING)]


@pytest.mark.parametrize(("tiles", "kernel", "dtype"), SAVING_CASES,
                         ids=[f"{t.label}-{k[0]}x{k[1]}-{str(d)[6:]}" for t, k, d in SAVING_CASES])
def test_the_saved_conv_output_gives_the_recomputed_gradient(tiles: Tiles, kernel: tuple[int, int],
                                                             dtype: torch.dtype, device: torch.device) -> None:
    """``Tiles.save``: the forward also writes relu(conv) (rows 16-aligned, zeros past T'); made from it,
    the weight gradient is the one made from the grad kernel's recomputed conv, and its sums over mel
    are the sums of that gradient. The forward's other outputs do not change."""
    kernel_mels, kernel_steps = kernel
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 1, 5 + kernel_mels, 36 + kernel_steps, generator=generator)
    weight = torch.randn(40, 1, kernel_mels, kernel_steps, generator=generator) / (kernel_mels * kernel_steps) ** 0.5
    bias = torch.randn(40, 37, generator=generator) * 0.1
    sign = torch.where(torch.arange(40) % 3 == 0, -1.0, 1.0)
    k0, k1 = torch.randn(2, 40, generator=generator)
    dz = torch.randn(3, 40, 37, generator=generator)
    x, weight = x.to(device, dtype), weight.to(device, dtype)
    bias, sign, k0, k1, dz = (t.to(device, torch.promote_types(dtype, torch.float32)) for t in (bias, sign, k0, k1, dz))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # (new memory filled with NaN: unwritten elements show)
    try:
        with using_tiles(tiles):
            *unsaved, _, nothing = triton_branch.forward_partials(x, weight, bias, sign)
            *partials, count, saved = triton_branch.forward_partials(x, weight, bias, sign, save=True)
            value = partials[0]
            grad, _ = triton_branch.grad_of_conv(x, weight, bias, 0, saved.shape[2], value, k0, k1, dz)
            recomputed = triton_branch.weight_grad(x, grad, 0, weight.shape)
            found, sums = triton_branch.weight_grad_from_saved(x, saved, value, k0, k1, dz, weight.shape)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert nothing is None and count == 3 * 6 * 37
    for before, after in zip(unsaved, partials, strict=True):
        assert torch.equal(before, after)
    assert saved.shape == (3, 40, 6, 37) and saved.dtype == dtype and saved.stride(2) == 48
    tails = saved.as_strided((3, 40, 6, 48 - 37), saved.stride(), saved.storage_offset() + 37)
    assert not tails.any()
    exact = F.relu(F.conv2d(x.double(), weight.double()) + bias.double()[None, :, None, :])
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(saved.double(), exact, **tolerance)
    # the same gradient elementwise, so the same sums in the same order: equal up to fused multiply-adds
    torch.testing.assert_close(found, recomputed, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=1e-6)
    torch.testing.assert_close(sums, grad.sum(dim=2, dtype=sums.dtype), rtol=1e-12 if dtype == torch.float64 else 1e-5,
                               atol=1e-5)


def test_packed_windows_hold_each_frames_taps_contiguously_in_aligned_rows() -> None:
    x = torch.randn(2, 1, 6, 12, dtype=torch.float64)
    packed = triton_branch.pack_windows(x, kernel_mels=3, kernel_steps=7, width=8)  # [B, T' = 6, row]
    assert packed.shape[:2] == (2, 6) and packed.shape[2] % triton_branch.ALIGNMENT == 0
    # the last mel position's taps (3 rows of 8, padded to 32) stay inside the row:
    assert packed.shape[2] >= 3 * 8 + triton_branch.packed_taps(3, 8) == 24 + 32
    for b, t, m, j in ((0, 0, 0, 0), (1, 5, 5, 6), (1, 2, 3, 4)):
        assert packed[b, t, m * 8 + j] == x[b, 0, m, t + j]
    assert not packed.view(2, 6, -1)[:, :, 6 * 8:].any()  # the row's tail
    assert not packed[:, :, :48].view(2, 6, 6, 8)[..., 7:].any()  # each mel row's 8th tap
    weight = torch.randn(4, 1, 3, 7, dtype=torch.float64)
    padded = triton_branch.padded_weight(weight, 8)
    assert padded.shape == (4, 32) and padded.is_contiguous()
    rows = padded[:, :24].view(4, 3, 8)
    assert torch.equal(rows[..., :7], weight[:, 0]) and not rows[..., 7:].any()
    assert not padded[:, 24:].any()
    with pytest.raises(ValueError, match=r"Tiles\.pack must be 0 \(off\), 8 or 16"):
        Tiles(pack=4)
    with pytest.raises(ValueError, match=r"Tiles\.cell_stats must be 0 or 1"):
        Tiles(cell_stats=2)


@pytest.mark.parametrize("kernel", [(5, 9), (1, 7), (9, 3)], ids=lambda kernel: f"{kernel[0]}x{kernel[1]}")
def test_packed_tiles_fall_back_or_pack_and_compute_what_unpacked_ones_compute(kernel: tuple[int, int],
                                                                            device: torch.device) -> None:
    """Wider than the pack (5 × 9) or one band tall (1 × 7, musicnn's temporal kernels are 1 × 32–128):
    read unpacked; 9 × 3 packed, with 9·8 = 72 taps padded to 80. (Statistics per cell, either way;
    against the first choice, ``Tiles()``, which packs nothing.)"""
    packed = Tiles(pack=8, cell_stats=1)
    assert triton_branch.packs(packed, *kernel) == (kernel == (9, 3)) and not Tiles().pack
    expected, found = kernel_results(Tiles(), device, kernel), kernel_results(packed, device, kernel)
    for name in ("ties", "matched"):
        assert torch.equal(found[name], expected[name]), name
    for name in ("value", "total", "mean", "var", "grad", "weight_grad"):
        torch.testing.assert_close(found[name], expected[name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("tiles", CANDIDATE_TILES, ids=lambda tiles: tiles.label)
def test_every_candidate_compiles_for_an_h100(tiles: Tiles) -> None:
    """Within the shared memory of one block, bf16 without register spills, fp32 (TF32) with at most
    128 bytes per thread (a candidate may trade a few fp32 spills for bf16 speed)."""
    for dtype, spill_limit in ((torch.bfloat16, 0), (torch.float32, 128)):
        for kernel, found in triton_kernels.compile_for_gpu(dtype, tiles=tiles).items():
            assert 0 < found["shared_bytes"] <= H100_SHARED_MEMORY_BYTES, (kernel, found)
            assert found["spill_bytes"] <= spill_limit, (dtype, kernel, found)
            expected_warps = tiles.wgrad_warps if kernel == "weight_grad_kernel" else tiles.warps
            assert found["warps"] == expected_warps, (kernel, found)
            if tiles.pack:  # what packing is for: the window loads become pipelined asynchronous copies
                assert found["async_copies"] > 0, (dtype, kernel, found)
