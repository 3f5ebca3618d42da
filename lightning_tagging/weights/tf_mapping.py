"""Strict TF-variable → torch-parameter mapping: every tensor used once, none left over.

A mapping is a list of :class:`Layer` s, each naming a torch module (``timbral_f74.conv``), the
TF variable scope that holds its weights (``conv2d``) and how the weights convert (a layer
``kind``). :func:`convert` expands that into a torch ``state_dict`` and fails with one message
listing every missing, unexpected or misshapen tensor, so a wrong mapping can never load
silently.

TF layouts (NHWC graphs): conv kernels are ``[height, width, in, out]`` (HWIO), dense kernels
``[in, out]``; batch norm keeps ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from lightning_tagging.errors import UserError

LayerKind = Literal["batch_norm", "conv2d", "conv2d_as_conv1d", "dense"]


def _conv2d(kernel: np.ndarray) -> np.ndarray:
    """HWIO ``[time, mel, in, out]`` → torch ``[out, in, mel, time]`` (our convs see ``[B, C, mel, time]``)."""
    return kernel.transpose(3, 2, 1, 0)


def _conv2d_as_conv1d(kernel: np.ndarray) -> np.ndarray:
    """A TF 2-D conv over ``[time, channels, 1]`` maps ``[7, C, 1, F]`` → torch Conv1d ``[F, C, 7]``."""
    if kernel.ndim != 4 or kernel.shape[2] != 1:
        raise UserError(f"expected a [width, channels, 1, filters] kernel, got shape {kernel.shape}")
    return kernel[:, :, 0, :].transpose(2, 1, 0)


def _same(value: np.ndarray) -> np.ndarray:
    return value


def _dense(kernel: np.ndarray) -> np.ndarray:
    """``[in, out]`` → torch Linear ``[out, in]``."""
    return kernel.T


# kind → (torch parameter name, TF variable name, conversion) for each tensor of the layer.
KINDS: dict[LayerKind, tuple[tuple[str, str, Callable[[np.ndarray], np.ndarray]], ...]] = {
    "batch_norm": (
        ("weight", "gamma", _same),
        ("bias", "beta", _same),
        ("running_mean", "moving_mean", _same),
        ("running_var", "moving_variance", _same),
    ),
    "conv2d": (("weight", "kernel", _conv2d), ("bias", "bias", _same)),
    "conv2d_as_conv1d": (("weight", "kernel", _conv2d_as_conv1d), ("bias", "bias", _same)),
    "dense": (("weight", "kernel", _dense), ("bias", "bias", _same)),
}

# Torch state_dict entries with no TF counterpart: BatchNorm's step counter (only used when
# momentum is None, which ours never is).
TORCH_ONLY_SUFFIXES = (".num_batches_tracked",)


@dataclass(frozen=True)
class Layer:
    """One torch module ← one TF variable scope."""

    torch_module: str
    tf_scope: str
    kind: LayerKind


def is_optimizer_state(name: str) -> bool:
    """Adam's slots (``<var>/Adam``, ``<var>/Adam_1``) and its step powers: training state, not weights."""
    return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power")


def convert(
    layers: Iterable[Layer],
    tf_shapes: Mapping[str, tuple[int, ...]],
    read: Callable[[str], np.ndarray],
    target: Mapping[str, torch.Tensor],
    source: str,
) -> dict[str, torch.Tensor]:
    """Build a complete state_dict for ``target`` from TF tensors, strictly.

    Args:
        layers: the mapping.
        tf_shapes: every tensor in the TF checkpoint → its shape.
        read: reads one TF tensor by name.
        target: the torch module's ``state_dict()`` (gives the expected keys, shapes, dtypes).
        source: what the checkpoint is, for error messages.

    Returns:
        ``target``'s keys → converted tensors (``num_batches_tracked`` kept from ``target``).

    Raises:
        UserError: listing every TF tensor the mapping names but the checkpoint lacks, every
        TF tensor left unused (optimizer state excepted), every torch entry left unfilled and
        every shape that does not match after conversion.
    """
    problems: list[str] = []
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for layer in layers:
        for torch_name, tf_name, conversion in KINDS[layer.kind]:
            tf_key, torch_key = f"{layer.tf_scope}/{tf_name}", f"{layer.torch_module}.{torch_name}"
            if tf_key not in tf_shapes:
                problems.append(f"missing TF tensor {tf_key!r} (for {torch_key})")
                continue
            if tf_key in used:
                problems.append(f"TF tensor {tf_key!r} is mapped twice")
            used.add(tf_key)
            if torch_key not in target:
                problems.append(f"no torch entry {torch_key!r} (for {tf_key})")
                continue
            value = conversion(read(tf_key))
            expected = tuple(target[torch_key].shape)
            if value.shape != expected:
                problems.append(
                    f"{tf_key} {tuple(tf_shapes[tf_key])} converts to {value.shape}, but {torch_key} is {expected}"
                )
                continue
            state[torch_key] = torch.from_numpy(np.ascontiguousarray(value)).to(target[torch_key].dtype)
    left_over = sorted(n for n in tf_shapes if n not in used and not is_optimizer_state(n))
    problems += [f"TF tensor {name!r} {tuple(tf_shapes[name])} is not used by the mapping" for name in left_over]
    for key, value in target.items():
        if key in state:
            continue
        if key.endswith(TORCH_ONLY_SUFFIXES):
            state[key] = value.clone()
        else:
            problems.append(f"torch entry {key!r} {tuple(value.shape)} gets no TF tensor")
    if problems:
        raise UserError(f"cannot import {source}: " + "; ".join(problems))
    return state
