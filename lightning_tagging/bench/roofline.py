"""The fastest a recorded step could run on a given GPU: a per-operator roofline.

Each operator takes at least as long as moving its bytes at the memory bandwidth and at
least as long as its FLOPs at the chip's peak rate for their dtype; a step of kernels run
one after another takes at least the sum. So ``batch / sum(max(bytes / bandwidth,
flops / rate))`` is a ceiling on training clips/s that no eager implementation of the same
operator sequence can beat, and the operators that fill that sum are where the time goes.
Fusing operators (torch.compile, musicnn's ``fused_compiled``) lowers the ceiling's cost by
removing round trips through memory; the eager sequence is what is recorded.

Peaks are the vendors' datasheet figures, dense (without 2:4 sparsity): NVIDIA H100 Tensor
Core GPU datasheet (SXM5 and PCIe 80 GB) and NVIDIA H200 datasheet (SXM, 141 GB; same chip,
faster memory). Kernels reach less: on the H100 and H200 machines this project may borrow, a
device-to-device copy has been reported at about 3.0 and 4.3 TB/s (90 % of peak) and a large
bf16 matrix product at about 800 TFLOP/s (81 %), so no implementation reaches the ceiling.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from lightning_tagging.bench.traffic import OpRecord


@dataclass(frozen=True)
class GpuPeaks:
    """A GPU's datasheet peaks: HBM ``bandwidth`` in bytes/s and FLOP/s per arithmetic kind."""

    name: str
    bandwidth: float
    bf16_tensor_flops: float  # also fp16
    tf32_tensor_flops: float  # fp32 convolutions by default (cuDNN's TF32), fp32 matmuls when allowed
    fp32_flops: float  # fp32 without tensor cores: fp32 matmuls by default, float64 too (generously)


GPUS = {
    "h100-sxm": GpuPeaks("NVIDIA H100 SXM5 80GB", 3.35e12, 989.4e12, 494.7e12, 66.9e12),
    "h100-pcie": GpuPeaks("NVIDIA H100 PCIe 80GB", 2.0e12, 756.0e12, 378.0e12, 51.2e12),
    "h200": GpuPeaks("NVIDIA H200 SXM 141GB", 4.8e12, 989.4e12, 494.7e12, 66.9e12),
}
# Also musicnn's Triton convolutions (models/triton_branch.py), which follow cuDNN's TF32 setting too.
CONVOLUTIONS = frozenset({"aten.convolution", "aten.convolution_backward", "aten._convolution",
                          "aten.cudnn_convolution", "lightning_tagging.conv_relu_extremes",
                          "lightning_tagging.conv_relu_grad", "lightning_tagging.conv_weight_grad",
                          "lightning_tagging.conv_weight_grad_saved"})


@dataclass(frozen=True)
class Roofline:
    """The ceiling of one recorded step: seconds, of which how much memory-bound, and by operator."""

    seconds: float
    memory_bound_seconds: float
    seconds_by_op: dict[str, float]

    def share_by_op(self, top: int) -> dict[str, float]:
        """The ``top`` operators by their share of the ceiling's time, largest first."""
        ranked = sorted(self.seconds_by_op.items(), key=lambda item: -item[1])[:top]
        return {name: seconds / self.seconds for name, seconds in ranked}


def flop_rate(record: OpRecord, gpu: GpuPeaks) -> float:
    """Peak FLOP/s ``gpu`` runs ``record``'s arithmetic at, under torch's current fp32 settings."""
    if record.dtype in (torch.bfloat16, torch.float16):
        return gpu.bf16_tensor_flops
    if record.dtype == torch.float32:
        tf32 = (torch.backends.cudnn.conv.fp32_precision == "tf32" if record.name in CONVOLUTIONS
                else torch.get_float32_matmul_precision() != "highest")
        return gpu.tf32_tensor_flops if tf32 else gpu.fp32_flops
    return gpu.fp32_flops


def roofline(records: list[OpRecord], gpu: GpuPeaks) -> Roofline:
    """The per-operator roofline of ``records`` run one after another on ``gpu``."""
    by_op: Counter[str] = Counter()
    memory_bound = 0.0
    for record in records:
        memory_s = record.bytes / gpu.bandwidth
        arithmetic_s = record.flops / flop_rate(record, gpu)
        by_op[record.name] += max(memory_s, arithmetic_s)
        if memory_s >= arithmetic_s:
            memory_bound += memory_s
    return Roofline(sum(by_op.values()), memory_bound, dict(by_op))
