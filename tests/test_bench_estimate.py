"""`lt bench estimate`: FLOPs and peak memory of a training step, worked out on fake tensors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from lightning_tagging.bench.configs import ModelConfig, build_module
from lightning_tagging.bench.estimate import estimate, model_gflop_per_clip
from lightning_tagging.bench.memory import saved_activation_bytes
from lightning_tagging.cli import main as lt_main

FUSED = '{"conv_impl": "fused"}'


def test_the_models_cost_the_flops_the_literature_gives() -> None:
    """The issue's figures for one training clip (forward and backward), 8.4 and 10.4 GFLOP,
    from Won et al.'s reference models: ours have the published size. (By default musicnn trains with its
    input BN folded, which skips the spectrogram's gradient: ``tests/test_input_bn_fold.py``.)"""
    assert estimate(ModelConfig("musicnn", 2).baseline).train_gflop_per_clip == pytest.approx(8.4, rel=0.01)
    assert estimate(ModelConfig("samplecnn", 2)).train_gflop_per_clip == pytest.approx(10.4, rel=0.01)


def test_flops_per_clip_do_not_depend_on_batch_or_precision() -> None:
    args = '{"width": 0.25, "fold_input_bn": false}'  # folding runs in fp32 only: one formulation for both
    small = estimate(ModelConfig("musicnn", 2, backbone_args=args)).train_gflop_per_clip
    large = estimate(ModelConfig("musicnn", 8, "bf16-mixed", backbone_args=args)).train_gflop_per_clip
    assert small == pytest.approx(large, rel=1e-9)


def test_a_recomputing_implementation_executes_more_but_the_model_counts_the_same() -> None:
    plain = ModelConfig("musicnn", 4, backbone_args='{"conv_impl": "conv2d", "fold_input_bn": false, "width": 0.25}')
    fused = ModelConfig("musicnn", 4, backbone_args='{"conv_impl": "fused", "width": 0.25}')
    # The fused branch runs its convs once more in backward (recompute instead of storing).
    assert estimate(fused).train_gflop_per_clip > 1.2 * estimate(plain).train_gflop_per_clip
    assert model_gflop_per_clip(fused) == pytest.approx(model_gflop_per_clip(plain), rel=1e-9)
    assert model_gflop_per_clip(plain) == pytest.approx(estimate(plain).train_gflop_per_clip, rel=1e-9)


def test_peak_memory_holds_the_saved_activations_weights_and_adam_state() -> None:
    """A lower bound from an independent count on real tensors: at the peak of the second step
    the parameters and Adam's two moments are alive, and so is what the forward saved."""
    config = ModelConfig("musicnn", 4, backbone_args='{"conv_impl": "conv2d", "width": 0.25}')
    module = build_module(config).train()
    audio = torch.randn(config.batch, module.train_crop_samples) * 0.1
    targets = torch.zeros(config.batch, 50)
    saved = saved_activation_bytes(lambda: F.binary_cross_entropy_with_logits(module(audio), targets),
                                   exclude=[*module.parameters(), *module.buffers()])
    parameters = sum(p.numel() * p.element_size() for p in module.parameters())

    result = estimate(config)
    assert result.peak_gib * 2**30 >= saved + 3 * parameters
    assert result.peak_by_kind_gib["optimizer state"] * 2**30 == pytest.approx(2 * parameters, rel=0.01)
    assert sum(result.peak_by_kind_gib.values()) == pytest.approx(result.peak_gib, rel=1e-6)


def test_fused_musicnn_fits_the_8_gib_target_at_batch_256_and_bf16_saves_activations() -> None:
    plain = estimate(ModelConfig("musicnn", 256, backbone_args='{"conv_impl": "conv2d"}'))
    fused = estimate(ModelConfig("musicnn", 256, backbone_args=FUSED))
    bf16 = estimate(ModelConfig("musicnn", 256, "bf16-mixed", backbone_args='{"conv_impl": "conv2d"}'))
    assert fused.peak_gib < 8 < plain.peak_gib  # the target, in tensors (a GPU adds workspaces)
    assert fused.peak_by_kind_gib["activations"] * 10 < plain.peak_by_kind_gib["activations"]
    assert bf16.peak_by_kind_gib["activations"] < 0.75 * plain.peak_by_kind_gib["activations"]


def test_activation_memory_grows_with_the_batch() -> None:
    args = '{"conv_impl": "conv2d", "width": 0.25}'
    peaks = [estimate(ModelConfig("musicnn", batch, backbone_args=args)).peak_gib for batch in (8, 16, 32)]
    # Linear in the batch: the per-clip part doubles with it, the weights stay.
    assert peaks[2] - peaks[1] == pytest.approx(2 * (peaks[1] - peaks[0]), rel=0.05)


def test_lt_bench_estimate_prints_a_row_and_json_per_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert lt_main(["bench", "estimate", "--backbone", "musicnn", "samplecnn", "--batch", "4", "8",
                    "--backbone-args", '{"width": 0.25}', "--json"]) == 0
    out = capsys.readouterr().out
    assert "skipped for samplecnn" in out  # samplecnn takes no width
    records = json.loads(out[out.index("\n[") + 1:])
    assert [(r["config"]["backbone"], r["config"]["batch"]) for r in records] == [("musicnn", 4), ("musicnn", 8)]
    for record in records:
        assert record["train_gflop_per_clip"] > 0 and record["peak_gib"] > 0
        row = next(line for line in out.splitlines() if line.startswith(record["label"] + " "))
        assert f"{record['train_gflop_per_clip']:7.2f} GFLOP/clip" in row
        assert f"peak {record['peak_gib']:7.2f} GiB" in row
    assert records[1]["peak_gib"] > records[0]["peak_gib"]


def cuda_peak_gib_of_two_adam_steps(config: ModelConfig) -> float:
    """CUDA's peak allocated GiB over two Adam steps of ``config``, counted from what was allocated before."""
    module = build_module(config).cuda().train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    for _ in range(2):
        audio = torch.randn(config.batch, module.train_crop_samples, device="cuda")
        loss = F.binary_cross_entropy_with_logits(module(audio), torch.zeros(config.batch, 50, device="cuda"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    # The parameters were allocated before the reset: count them in, as the estimate does.
    parameters = sum(p.numel() * p.element_size() for p in module.parameters())
    return (torch.cuda.max_memory_allocated() - before + parameters) / 2**30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares with CUDA's peak allocation (device-bench.sh)")
@pytest.mark.parametrize(("backbone", "backbone_args", "tolerance"), [
    # cuDNN's own workspace is not a tensor the estimate sees. For these models it is small: at batch
    # 256 on an H100 (2026-11-26) the estimate was 3-4 % (fused musicnn) and under 1 % (sampleCNN) low.
    ("musicnn", FUSED, 0.10),
    ("samplecnn", "{}", 0.10),
    # Library convs with musicnn's tall single-channel kernels: in fp32 cuDNN picks FFT algorithms whose
    # workspace was 18 GiB at batch 256 (peak 31.3 GiB, estimate 13.2): the estimate is a lower bound.
    ("musicnn", '{"conv_impl": "conv2d"}', None),
])
def test_the_estimate_matches_cudas_peak_allocation_less_convolution_workspaces(
    backbone: str, backbone_args: str, tolerance: float | None
) -> None:
    """On a GPU: the fake-tensor peak against torch.cuda.max_memory_allocated for two Adam steps."""
    config = ModelConfig(backbone, 64, backbone_args=backbone_args)
    measured = cuda_peak_gib_of_two_adam_steps(config)
    estimated = estimate(config).peak_gib
    print(f"{config.label}: estimated {estimated:.3f} GiB, CUDA peak allocated {measured:.3f} GiB")
    if tolerance is None:
        assert estimated <= measured * 1.02
    else:
        assert estimated == pytest.approx(measured, rel=tolerance)
