"""`lt bench model`: training-step and inference throughput of front-end + backbone.

Data is already on the device (random audio), so this measures the model alone. Every
configuration is printed next to the plain version of the same model (eager, fp32, library
convolutions: ``conv_impl="conv2d"`` where a backbone has faster implementations), measured
in the same run, because absolute figures drift between runs and machines.

    lt bench model --backbone musicnn samplecnn --batch 16 256 --precision fp32 bf16-mixed
    lt bench model --backbone musicnn --backbone-args '{"conv_impl": "mel_windows"}' '{"conv_impl": "fused"}'
    lt bench model --backbone samplecnn --batch 256 --precision bf16-mixed --compile --compile-mode reduce-overhead
    lt bench model --backbone musicnn --batch 256 --profile 10    # and where each training step's time goes

Memory is reported twice: peak allocated GiB during training (CUDA only) and "act GiB", the
bytes autograd saves for backward in one training forward of the eager module
(``bench/memory.py``), which any device can count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lightning_tagging.bench.configs import (
    ModelConfig,
    add_config_arguments,
    build_module,
    configs_from,
    with_baselines,
)
from lightning_tagging.bench.estimate import model_gflop_per_clip
from lightning_tagging.bench.memory import saved_activation_bytes
from lightning_tagging.bench.profile import OperatorShare, format_profile, profile_steps
from lightning_tagging.bench.timing import peak_memory_gib, reset_peak_memory, resolve_device, time_per_call
from lightning_tagging.compiling import COMPILE_MODES, compile_callable


@dataclass
class ModelResult:
    config: ModelConfig
    device: str
    train_clips_per_s: float
    train_ms_per_step: float
    infer_clips_per_s: float
    peak_train_memory_gib: float | None
    saved_activation_gib: float  # what autograd saves in one training forward of the eager module
    baseline_train_clips_per_s: float | None = None
    model_gflop_per_clip: float | None = None  # the plain model's training GFLOP per clip (bench/estimate.py)
    profile: list[dict[str, Any]] | None = None  # with --profile: the operators taking the most time (profile.py)

    @property
    def speedup(self) -> float | None:
        if self.baseline_train_clips_per_s is None:
            return None
        return self.train_clips_per_s / self.baseline_train_clips_per_s

    @property
    def model_tflops(self) -> float | None:
        """Training TFLOP/s of the model's own arithmetic (as MFU counts: a recompute is not counted)."""
        if self.model_gflop_per_clip is None:
            return None
        return self.model_gflop_per_clip * self.train_clips_per_s / 1000


def measure(config: ModelConfig, device: torch.device, steps: int, warmup: int, profile_top: int = 0) -> ModelResult:
    """Time optimizer steps and inference forwards of one configuration; count its saved activations;
    with ``profile_top``, also profile two training steps (that many operators)."""
    saved_flag = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    try:
        return _measure(config, device, steps, warmup, profile_top)
    finally:
        torch.backends.cudnn.benchmark = saved_flag


def _measure(config: ModelConfig, device: torch.device, steps: int, warmup: int, profile_top: int) -> ModelResult:
    if config.compile:
        # Every config builds a new module whose compiled code lands in the same cache: without a
        # reset, dynamo's recompile limit would quietly send later configs back to eager.
        torch._dynamo.reset()
    torch.manual_seed(0)
    module = build_module(config).to(device)
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    model = module
    if config.compile:  # as `lt fit` with model.compile does (on a CPU, with torch 2.11's workaround)
        model = compile_callable(module, device.type, config.compile_mode, config.compile_backend)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    audio = torch.randn(config.batch, module.train_crop_samples, device=device) * 0.1
    targets = (torch.rand(config.batch, module.backbone.n_tags, device=device) < 0.1).float()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if config.precision == "bf16-mixed"
        else contextlib.nullcontext()
    )

    def loss_of(net: torch.nn.Module) -> torch.Tensor:
        with autocast:
            logits = net(audio)
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    def train_step() -> None:
        if config.compile:
            # CUDA graphs (reduce-overhead, max-autotune) reuse output buffers: declare a new step.
            torch.compiler.cudagraph_mark_step_begin()
        loss = loss_of(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer() -> None:
        if config.compile:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            model(audio)

    module.train()
    # The eager module even for compiled configs: saved-tensor hooks see autograd's view of eager
    # ops, not what a compiled graph keeps (which is usually less).
    saved = saved_activation_bytes(lambda: loss_of(module), exclude=[*module.parameters(), *module.buffers()])
    reset_peak_memory(device)
    train_s = time_per_call(train_step, device, warmup, steps)
    peak = peak_memory_gib(device)
    profile = [asdict(share) for share in profile_steps(train_step, device, top=profile_top)] if profile_top else None
    module.eval()
    infer_s = time_per_call(infer, device, warmup, steps)
    return ModelResult(
        config=config,
        device=device_name(device),
        train_clips_per_s=config.batch / train_s,
        train_ms_per_step=train_s * 1000,
        infer_clips_per_s=config.batch / infer_s,
        peak_train_memory_gib=peak,
        saved_activation_gib=saved / 2**30,
        model_gflop_per_clip=model_gflop_per_clip(config),
        profile=profile,
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def run(configs: list[ModelConfig], device: torch.device, steps: int, warmup: int,
        profile_top: int = 0) -> list[ModelResult]:
    """Measure each config and its eager fp32 baseline (once per backbone and batch)."""
    results: dict[ModelConfig, ModelResult] = {}
    for config in with_baselines(configs):
        result = measure(config, device, steps, warmup, profile_top)
        baseline = results.get(config.baseline)
        if baseline is not None:
            result.baseline_train_clips_per_s = baseline.train_clips_per_s
        results[config] = result
        print(format_row(result), flush=True)
        if result.profile:
            print(format_profile([OperatorShare(**share) for share in result.profile], device), flush=True)
    return [results[config] for config in configs]


def format_row(result: ModelResult) -> str:
    memory = "-" if result.peak_train_memory_gib is None else f"{result.peak_train_memory_gib:.2f}"
    speedup = "baseline" if result.speedup is None else f"x{result.speedup:.2f} vs eager fp32"
    tflops = "-" if result.model_tflops is None else f"{result.model_tflops:.3g}"
    return (
        f"{result.config.label:<42} train {result.train_clips_per_s:9.1f} clips/s "
        f"({result.train_ms_per_step:8.1f} ms/step, {tflops} TFLOP/s)  infer {result.infer_clips_per_s:9.1f} clips/s  "
        f"peak {memory} GiB  act {result.saved_activation_gib:.3f} GiB  {speedup}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, batches=[16])
    parser.add_argument("--compile", action="store_true", help="torch.compile the module")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                        help="with --compile: torch.compile mode (reduce-overhead: CUDA graphs)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="with --compile: torch.compile backend (eager, aot_eager: debugging, no code generation)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its conv algorithms per shape (Trainer(benchmark=True)); CUDA only")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing, profile two training steps and print the N operators taking the most "
                             "time (GPU time on CUDA)")


def configs_of(args: argparse.Namespace) -> list[ModelConfig]:
    """Every (backbone, batch, backbone-args variant, precision) the arguments ask for, with its settings."""
    return configs_from(
        args, compile=args.compile, channels_last=args.channels_last, compile_mode=args.compile_mode,
        compile_backend=args.compile_backend, cudnn_benchmark=args.cudnn_benchmark,
    )


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    configs = configs_of(args)
    print(f"lt bench model on {device_name(device)}, torch {torch.__version__}", flush=True)
    results = run(configs, device, args.steps, args.warmup, args.profile)
    if args.json:
        print(json.dumps([as_json(r) for r in results], indent=2))
    return 0


def as_json(result: ModelResult) -> dict[str, Any]:
    record = asdict(result)
    record["config"] = asdict(result.config)
    record["label"] = result.config.label
    record["speedup_vs_eager_fp32"] = result.speedup
    record["model_tflops"] = result.model_tflops
    return record
