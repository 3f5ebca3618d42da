"""``conv_impl="auto"`` (musicnn) and ``block_impl="auto"`` (sampleCNN) run the implementation measured
fastest for each batch's device, batch size and precision, and compute what that implementation
computes when it is named.

On a CPU "auto" never picks the Triton kernels (they would run in Triton's interpreter); on a GPU of
compute capability 9.0 (scripts/device-bench.sh) it does, for training batches from
``FUSED_TRITON_MIN_BATCH``.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from test_samplecnn_nhwc import ConvolutionLayouts
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_tagging.models import Musicnn, SampleCNN, triton_kernels
from lightning_tagging.models.musicnn import (
    FRONTEND_BRANCHES,
    FUSED_TRITON_MIN_BATCH,
    FUSED_TRITON_MIN_CAPABILITY,
    auto_branch_impl,
)
from lightning_tagging.models.samplecnn import auto_block_impl
from lightning_tagging.models.single_channel_conv import auto_impl


def _hopper(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= FUSED_TRITON_MIN_CAPABILITY


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[None]:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@pytest.mark.parametrize("bf16", [False, True])
def test_musicnn_auto_trains_with_the_triton_kernels_only_from_the_measured_batch_on_a_hopper_gpu(
        device: torch.device, bf16: bool) -> None:
    threshold = FUSED_TRITON_MIN_BATCH["bf16" if bf16 else "fp32"]
    for batch, at_least in ((threshold - 1, False), (threshold, True)):
        x = torch.empty(batch, 1, 8, 4, device=device)
        with _autocast(device, bf16):
            chosen = auto_branch_impl(x, training=True)
            assert chosen == ("fused_triton" if at_least and _hopper(device) else "auto"), (batch, device)
            assert auto_branch_impl(x, training=False) == "auto"  # inference: the convs
            with torch.no_grad():
                assert auto_branch_impl(x, training=True) == "auto"


class CustomOps(TorchDispatchMode):
    """Records the names of this project's custom ops (the Triton kernels) that run."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.namespace == "lightning_tagging":
            self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_musicnn_auto_computes_what_the_implementations_it_picks_compute(device: torch.device) -> None:
    """A training step with "auto" against the same model naming what "auto" picks (on a Hopper GPU
    fused_triton; elsewhere each branch's conv by ``single_channel_conv.auto_impl``): same logits,
    gradients and BN running statistics (the input BN folded alike), to the bit."""
    torch.manual_seed(4)
    auto = Musicnn(n_tags=5, n_mels=16, n_frames=24, width=0.05, dropout=0.0).to(device).train()
    x = torch.randn(FUSED_TRITON_MIN_BATCH["fp32"], 1, 16, 24, device=device)
    named = copy.deepcopy(auto)
    for name in FRONTEND_BRANCHES:
        branch = getattr(named, name)
        tall = branch.conv.weight.shape[2] > 1
        branch.conv_impl = "fused_triton" if _hopper(device) else auto_impl(device, tall=tall, training=True)
    logits, ops = [], []
    for model in (auto, named):
        with CustomOps() as seen:
            logits.append(model(x))
            logits[-1].square().sum().backward()
        ops.append(seen.names)
    saving = triton_kernels.DEFAULT_TILES.save  # (the conv output saved for backward, or recomputed)
    triton = {"conv_relu_extremes", *(["conv_weight_grad_saved"] if saving else ["conv_relu_grad", "conv_weight_grad"])}
    kernels = triton if _hopper(device) else set()
    assert ops[0] == ops[1] == kernels
    # To the bit on a CPU; on a GPU cuDNN's weight gradients may sum in another order from run to run.
    same = torch.equal if device.type == "cpu" else lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert same(logits[0], logits[1])
    for (name, a), b in zip(auto.named_parameters(), named.parameters(), strict=True):
        assert same(a.grad, b.grad), name
    for (name, a), b in zip(auto.named_buffers(), named.buffers(), strict=True):
        assert same(a.float(), b.float()), name


def test_samplecnn_auto_runs_channels_last_on_a_gpu_and_plain_on_a_cpu(device: torch.device) -> None:
    auto = SampleCNN(n_tags=4, dropout=0.0).to(device).train()
    assert auto.block_impl == "auto"
    named = copy.deepcopy(auto)
    named.use_block_impl(auto_block_impl(device))
    assert named.block_impl == ("nhwc" if device.type == "cuda" else "plain")
    x = torch.randn(2, 59049, device=device)
    outputs = []
    for model in (auto, named):
        with ConvolutionLayouts() as seen:
            outputs.append(model(x))
            outputs[-1].sum().backward()
        # NHWC: nine blocks and the head as 4-D channels-last convs (the stem is a matrix product).
        assert seen.channels_last == ([True] * 20 if device.type == "cuda" else [False] * 22)
    same = torch.equal if device.type == "cpu" else lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert same(outputs[0], outputs[1])
    for (name, a), b in zip(auto.named_parameters(), named.parameters(), strict=True):
        assert same(a.grad, b.grad), name
