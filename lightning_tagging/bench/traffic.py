"""Memory traffic and arithmetic of every operator a step runs, recorded one call at a time.

A training step of these models spends most of its GPU time not multiplying but moving
tensors of shape [batch, filters, frequency, time] through BatchNorm, ReLU and pooling, each
of which reads its inputs from GPU memory and writes its outputs back. :class:`OpRecorder`
is a ``TorchDispatchMode``: it sees each ATen operator below autograd (the kernels the
backward runs too) and records what one eager kernel of it must move and compute:

- bytes: every distinct tensor argument read once plus every output written once. A view
  (``view``, ``transpose``, ``expand`` ...) moves nothing; an in-place op reads and writes
  its tensor; a broadcast (stride-0) dimension is stored once. Two exceptions, where that rule
  would count what the kernel never moves: an ``out=`` tensor is only written, and a scatter
  (``scatter_add_`` ...) reads and writes only the elements its index names. Reuse between consecutive
  kernels through the L2 cache is not credited: at batch 256 the tensors are gigabytes,
  far beyond a 50 MB L2.
- FLOPs: torch's own formulas (``torch.utils.flop_counter.flop_registry``) for
  convolutions and matrix products, two per multiply-add; other ops count zero.
- the dtype the FLOPs run in (the first tensor argument's), which picks the tensor-core rate.

Run it inside ``FakeTensorMode`` and nothing is computed or allocated: shapes, dtypes and
strides are all it needs. :mod:`~lightning_tagging.bench.roofline` turns the records into a
time per step on a given GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

# Ops that return tensors but move no data: allocations without a fill, aliases whose
# OpOverload does not declare itself a view, and in-place changes of shape or strides.
NO_TRAFFIC = frozenset({
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
    "detach", "alias", "_unsafe_view", "lift_fresh", "set_", "resize_",
    "transpose_", "t_", "squeeze_", "unsqueeze_", "as_strided_", "swapaxes_", "swapdims_",
})


# In-place scatters ``op(self, dim, index, src)``: they touch ``index.numel()`` elements of ``self``.
SCATTERS = frozenset({"scatter_add_", "scatter_", "scatter_reduce_"})


@dataclass(frozen=True)
class OpRecord:
    """One operator call: ``name`` (``aten.convolution``), bytes read + written, FLOPs, compute dtype."""

    name: str
    bytes: int
    flops: int
    dtype: torch.dtype | None


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes of the distinct elements ``tensor`` addresses (a broadcast dimension counts once)."""
    size = tensor.element_size()
    for length, stride in zip(tensor.shape, tensor.stride(), strict=True):
        if stride != 0:
            size *= length
    return size


class OpRecorder(TorchDispatchMode):
    """Records an :class:`OpRecord` per data-moving ATen call made inside ``with recorder:``."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[OpRecord] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        # Metadata queries (prim.device, aten.sym_size ...) return no tensor; views share storage.
        if not outputs or func.is_view or name in NO_TRAFFIC:
            return out
        written_only = {id(t) for t in tree_leaves(kwargs.get("out")) if isinstance(t, torch.Tensor)}
        inputs = {id(t): t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        read = [t for key, t in inputs.items() if key not in written_only]
        moved = sum(stored_bytes(t) for t in read) + sum(stored_bytes(t) for t in outputs)
        if name in SCATTERS:  # self is args[0], the index args[2]: only the indexed elements move, both ways
            untouched = stored_bytes(args[0]) - args[2].numel() * args[0].element_size()
            moved -= 2 * max(untouched, 0)
        flops = 0
        if func.overloadpacket in flop_registry:
            flops = flop_registry[func.overloadpacket](*args, **kwargs, out_val=out)
        dtype = next(iter(inputs.values())).dtype if inputs else None
        self.records.append(OpRecord(f"{func.namespace}.{name}", moved, flops, dtype))
        return out

    @property
    def total_bytes(self) -> int:
        return sum(record.bytes for record in self.records)

    @property
    def total_flops(self) -> int:
        return sum(record.flops for record in self.records)
