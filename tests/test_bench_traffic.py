"""Memory traffic per operator (bench/traffic.py) and the roofline ceiling built on it (bench/roofline.py)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lightning_tagging.bench.configs import ModelConfig, build_module
from lightning_tagging.bench.estimate import estimate
from lightning_tagging.bench.memory import saved_activation_bytes
from lightning_tagging.bench.roofline import GPUS, roofline
from lightning_tagging.bench.traffic import OpRecord, OpRecorder
from lightning_tagging.cli import main as lt_main

SMALL_MUSICNN = '{"conv_impl": "conv2d", "width": 0.25}'


def test_an_elementwise_op_reads_its_input_and_writes_its_output_and_views_move_nothing() -> None:
    x = torch.randn(32, 64)
    bias = torch.randn(64)
    with OpRecorder() as recorder:
        y = torch.relu(x)  # 8 KiB in, 8 KiB out
        y.t().reshape(-1)  # a transpose is a view; reshaping it copies (read + write), then views
        y.relu_()  # in place: reads and writes its tensor
        x + bias  # the [64] bias is read once, whatever the broadcast
    assert [(record.name, record.bytes) for record in recorder.records] == [
        ("aten.relu", 2 * x.nbytes),
        ("aten.clone", 2 * x.nbytes),
        ("aten.relu_", 2 * x.nbytes),
        ("aten.add", 2 * x.nbytes + bias.nbytes),
    ]
    assert recorder.total_flops == 0


def test_an_out_tensor_is_only_written_and_a_scatter_moves_only_its_indexed_elements() -> None:
    x, grad = torch.randn(4, 8, 30), torch.empty(4, 8, 30)
    index = torch.arange(0, 30, 3).expand(4, 8, 10).contiguous()  # a third of the positions
    src = torch.randn(4, 8, 10)
    scale = torch.randn(8, 1)
    with OpRecorder() as recorder:
        torch.addcmul(scale, x, scale, out=grad)  # reads x (and scale), writes grad
        grad.scatter_add_(2, index, src)  # reads and writes a third of grad; reads index and src
    assert [(record.name, record.bytes) for record in recorder.records] == [
        ("aten.addcmul", 2 * x.nbytes + scale.nbytes),
        ("aten.scatter_add_", 2 * grad.nbytes // 3 + index.nbytes + src.nbytes),
    ]


def test_convolution_flops_and_dtype_are_what_the_flop_counter_and_autocast_say() -> None:
    x = torch.randn(2, 1, 24, 50, requires_grad=True)
    conv = torch.nn.Conv2d(1, 8, (9, 7))
    with OpRecorder() as recorder, FlopCounterMode(display=False) as flops:
        conv(x).sum().backward()
    assert recorder.total_flops == flops.get_total_flops() > 0
    with OpRecorder() as recorder, torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)
    assert [record.dtype for record in recorder.records if record.name == "aten.convolution"] == [torch.bfloat16]


def test_every_op_of_a_training_step_together_count_the_flop_counters_flops() -> None:
    module = build_module(ModelConfig("musicnn", 2, backbone_args=SMALL_MUSICNN)).train()
    audio = torch.randn(2, module.train_crop_samples) * 0.1
    with OpRecorder() as recorder, FlopCounterMode(display=False) as flops:
        F.binary_cross_entropy_with_logits(module(audio), torch.zeros(2, 50)).backward()
    assert recorder.total_flops == flops.get_total_flops()


def test_a_training_step_moves_at_least_what_it_saves_for_backward_twice() -> None:
    """An independent lower bound: each saved activation is written in forward and read in backward."""
    config = ModelConfig("musicnn", 4, backbone_args=SMALL_MUSICNN)
    module = build_module(config).train()
    audio = torch.randn(config.batch, module.train_crop_samples) * 0.1
    saved = saved_activation_bytes(
        lambda: F.binary_cross_entropy_with_logits(module(audio), torch.zeros(config.batch, 50)),
        exclude=[*module.parameters(), *module.buffers()])
    moved = estimate(config).train_gb_per_clip * 1e9 * config.batch
    assert moved >= 2 * saved
    assert moved < 20 * saved  # and not wildly more: a step is a few passes over its activations


def test_bf16_roughly_halves_the_traffic_and_raises_the_ceiling() -> None:
    fp32 = estimate(ModelConfig("musicnn", 8, backbone_args=SMALL_MUSICNN))
    bf16 = estimate(ModelConfig("musicnn", 8, "bf16-mixed", backbone_args=SMALL_MUSICNN))
    assert 0.4 < bf16.train_gb_per_clip / fp32.train_gb_per_clip < 0.65
    assert bf16.ceiling_clips_per_s > 1.5 * fp32.ceiling_clips_per_s


def test_the_ceiling_is_bound_by_bandwidth_and_by_arithmetic_per_op() -> None:
    gpu = GPUS["h100-sxm"]
    copy = OpRecord("aten.clone", bytes=int(3.35e9), flops=0, dtype=torch.float32)  # 1 ms at 3.35 TB/s
    product = OpRecord("aten.mm", bytes=1000, flops=int(989.4e9), dtype=torch.bfloat16)  # 1 ms of bf16
    conv = OpRecord("aten.convolution", bytes=1000, flops=int(494.7e9), dtype=torch.float32)  # 1 ms of TF32
    fp32_product = OpRecord("aten.mm", bytes=1000, flops=int(66.9e9), dtype=torch.float32)  # 1 ms, no tensor cores
    result = roofline([copy, product, conv, fp32_product], gpu)
    assert result.seconds == pytest.approx(4e-3)
    assert result.memory_bound_seconds == pytest.approx(1e-3)
    assert result.share_by_op(1) == {"aten.mm": pytest.approx(0.5)}
    assert roofline([copy], GPUS["h200"]).seconds == pytest.approx(3.35 / 4.8 * 1e-3)


def test_the_ceiling_respects_both_rooflines_of_the_whole_step() -> None:
    result = estimate(ModelConfig("samplecnn", 4, "bf16-mixed"), gpu="h100-sxm")
    gpu = GPUS["h100-sxm"]
    assert result.ceiling_clips_per_s <= gpu.bandwidth / (result.train_gb_per_clip * 1e9)
    assert result.ceiling_clips_per_s <= gpu.bf16_tensor_flops / (result.train_gflop_per_clip * 1e9)
    assert 0 < result.memory_bound_share <= 1
    assert sum(result.ceiling_share_by_op.values()) <= 1 + 1e-9


def test_lt_bench_estimate_prints_the_ceiling_and_its_top_operators(capsys: pytest.CaptureFixture[str]) -> None:
    assert lt_main(["bench", "estimate", "--backbone", "musicnn", "--batch", "4",
                    "--backbone-args", SMALL_MUSICNN, "--gpu", "h200", "--ops", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert "ceilings for NVIDIA H200" in out
    row = next(line for line in out.splitlines() if line.startswith("musicnn"))
    assert "GB/clip" in row and "clips/s" in row
    top_ops = [line for line in out.splitlines() if re.fullmatch(r" +\d+\.\d% +aten\.\w+", line)]
    assert len(top_ops) == 3
    record = json.loads(out[out.index("\n[") + 1:])[0]
    assert record["ceiling_clips_per_s"] > 0 and record["train_gb_per_clip"] > 0
    assert record["gpu"] == GPUS["h200"].name


def test_every_triton_kernel_op_runs_at_the_tensor_core_rate_in_the_ceiling() -> None:
    """Each of musicnn's kernel ops (``models/triton_branch.py``) is a convolution for the roofline: a tl.dot
    on tensor cores, at the TF32 rate in fp32 (an op left out would count at the CUDA cores' fp32 rate)."""
    from lightning_tagging.bench.roofline import CONVOLUTIONS
    from lightning_tagging.models import triton_branch  # noqa: F401 (registers the ops)

    ours = {f"lightning_tagging.{name}" for name in dir(torch.ops.lightning_tagging)
            if isinstance(getattr(torch.ops.lightning_tagging, name), torch._ops.OpOverloadPacket)}
    assert len(ours) >= 4 and ours <= CONVOLUTIONS
