"""torch.compile for training and benchmarks, with the one setting torch 2.11 needs on a CPU.

Used by :class:`~lightning_tagging.module.TaggingModule` (``model.compile: true``) and by
`lt bench model --compile`. Compiling fuses the elementwise passes around each convolution
(ReLU, BatchNorm's statistics and normalisation, their backward) into a few kernels. `lt bench
estimate` finds those passes taking most of a training step's memory traffic on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch._inductor

from lightning_tagging.errors import UserError

# torch.compile's modes. reduce-overhead replays CUDA graphs (fewer kernel launches: small batches);
# max-autotune also benchmarks kernel choices, which takes minutes.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def check_compile_mode(mode: str) -> None:
    """Raise a :class:`UserError` naming the choices unless ``mode`` is one of :data:`COMPILE_MODES`."""
    if mode not in COMPILE_MODES:
        raise UserError(f"unknown compile mode {mode!r}; choose one of {COMPILE_MODES}")


def compile_callable(
    fn: Callable[..., Any], device_type: str, mode: str = "default", backend: str = "inductor"
) -> Callable[..., Any]:
    """``torch.compile(fn, mode=mode, backend=backend)`` for code that runs on ``device_type``.

    On a CPU, inductor's layout optimisation (convolutions switched to channels_last) is turned
    off. With it, torch 2.11's CPU inductor writes out of bounds in the backward of conv → ReLU →
    BatchNorm → amax when the conv has a filter count such as 5, 17 or 20 (8 and 16 ran), as
    musicnn ×0.1 has: the process aborts with glibc heap corruption. This is PyTorch's issue
    #181618 (and #181689, #181688), found in its MKLDNN-aware C++ code generation. GPUs keep the
    optimisation. ``tests/test_compiling.py`` trains such a model compiled on a CPU.
    """
    check_compile_mode(mode)
    if backend == "inductor" and device_type == "cpu":
        options = {**torch._inductor.list_mode_options(mode), "layout_optimization": False}
        return torch.compile(fn, backend=backend, options=options)
    return torch.compile(fn, mode=None if mode == "default" else mode, backend=backend)
