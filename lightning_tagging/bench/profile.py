"""`lt bench model --profile N`: where a training step's time goes, operator by operator.

torch.profiler records a few training steps; each operator (``aten::convolution_backward``,
``aten::native_batch_norm``, ...) is charged with the time of the work it ran itself: on CUDA
the GPU time of the kernels it launched, on a CPU its own CPU time. Kernels are charged to the
operator that launched them, so the shares partition the step and add up to at most 1. On an
H100 this showed cuDNN's input gradient of musicnn's one-channel library convs taking 57 % of a bf16
step (docs/performance.md), which no FLOP count predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity

from lightning_tagging.bench.timing import synchronize


@dataclass
class OperatorShare:
    name: str
    share: float  # of the profiled steps' operator time, 0..1
    ms_per_step: float
    calls_per_step: float


def profile_steps(
    step: Callable[[], object], device: torch.device, steps: int = 2, top: int = 10
) -> list[OperatorShare]:
    """The ``top`` operators by their own time over ``steps`` calls of ``step`` (run it warm: after warm-up)."""
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        synchronize(device)
    # Operators are CPU-side events; on CUDA each carries the GPU time of the kernels it launched
    # itself, and the kernels' own events (device-side) would count that time twice.
    operators = [event for event in profiler.key_averages() if event.device_type == DeviceType.CPU]

    def own_us(event: object) -> float:
        return float(event.self_device_time_total if on_cuda else event.self_cpu_time_total)

    total = sum(own_us(event) for event in operators) or 1.0
    ranked = sorted(operators, key=own_us, reverse=True)[:top]
    return [OperatorShare(event.key, own_us(event) / total, own_us(event) / 1000 / steps, event.count / steps)
            for event in ranked if own_us(event) > 0]


def format_profile(shares: list[OperatorShare], device: torch.device) -> str:
    clock = "GPU" if device.type == "cuda" else "CPU"
    lines = [f"    {'operator':<44} {clock + ' share':>9} {'ms/step':>9} {'calls/step':>10}"]
    lines += [f"    {s.name[:44]:<44} {s.share:9.1%} {s.ms_per_step:9.2f} {s.calls_per_step:10.0f}" for s in shares]
    return "\n".join(lines)
