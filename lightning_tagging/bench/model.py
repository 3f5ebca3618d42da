"""`lt bench model`: training-step and inference throughput of front-end + backbone.

Data is already on the device (random audio), so this measures the model alone. Every
configuration is printed next to the plain version of the same model (eager, fp32, library
convolutions: ``conv_impl="conv2d"`` where a backbone has faster implementations), measured
in the same run, because absolute figures drift between runs and machines.

    lt bench model --backbone musicnn samplecnn --batch 16 256 --precision fp32 bf16-mixed
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lightning_tagging.bench.timing import peak_memory_gib, reset_peak_memory, resolve_device, time_per_call
from lightning_tagging.frontends import LogMel, Waveform
from lightning_tagging.models import BACKBONES
from lightning_tagging.module import TaggingModule

PRECISIONS = ("fp32", "bf16-mixed")


@dataclass(frozen=True)
class ModelConfig:
    """One benchmarked configuration."""

    backbone: str
    batch: int
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    compression: str = "log_eps"
    backbone_args: str = "{}"  # JSON, e.g. '{"width": 0.5}'

    @property
    def baseline(self) -> ModelConfig:
        """The same model and batch, plain eager fp32, with the straightforward implementation."""
        args = json.loads(self.backbone_args)
        if "conv_impl" in inspect.signature(BACKBONES[self.backbone]).parameters:
            args["conv_impl"] = "conv2d"  # the library conv: what a plain PyTorch port would run
        return ModelConfig(self.backbone, self.batch, compression=self.compression,
                           backbone_args=json.dumps(args, sort_keys=True))

    @property
    def label(self) -> str:
        extras = [self.precision] + ["compile"] * self.compile + ["channels_last"] * self.channels_last
        args = "" if self.backbone_args == "{}" else f" {self.backbone_args}"
        return f"{self.backbone}{args} b={self.batch} {'+'.join(extras)}"


@dataclass
class ModelResult:
    config: ModelConfig
    device: str
    train_clips_per_s: float
    train_ms_per_step: float
    infer_clips_per_s: float
    peak_train_memory_gib: float | None
    baseline_train_clips_per_s: float | None = None

    @property
    def speedup(self) -> float | None:
        if self.baseline_train_clips_per_s is None:
            return None
        return self.train_clips_per_s / self.baseline_train_clips_per_s


def build_module(config: ModelConfig, n_tags: int = 50) -> TaggingModule:
    """The TaggingModule a config describes (front-end chosen by the backbone's input kind)."""
    backbone = BACKBONES[config.backbone](n_tags=n_tags, **json.loads(config.backbone_args))
    frontend = Waveform() if backbone.input_kind == "waveform" else LogMel(compression=config.compression)
    return TaggingModule(frontend, backbone)


def measure(config: ModelConfig, device: torch.device, steps: int, warmup: int) -> ModelResult:
    """Time optimizer steps and inference forwards of one configuration."""
    torch.manual_seed(0)
    module = build_module(config).to(device)
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    model = torch.compile(module) if config.compile else module
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    audio = torch.randn(config.batch, module.train_crop_samples, device=device) * 0.1
    targets = (torch.rand(config.batch, module.backbone.n_tags, device=device) < 0.1).float()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if config.precision == "bf16-mixed"
        else contextlib.nullcontext()
    )

    def train_step() -> None:
        with autocast:
            logits = model(audio)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer() -> None:
        with autocast:
            model(audio)

    module.train()
    reset_peak_memory(device)
    train_s = time_per_call(train_step, device, warmup, steps)
    peak = peak_memory_gib(device)
    module.eval()
    infer_s = time_per_call(infer, device, warmup, steps)
    return ModelResult(
        config=config,
        device=device_name(device),
        train_clips_per_s=config.batch / train_s,
        train_ms_per_step=train_s * 1000,
        infer_clips_per_s=config.batch / infer_s,
        peak_train_memory_gib=peak,
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def run(configs: list[ModelConfig], device: torch.device, steps: int, warmup: int) -> list[ModelResult]:
    """Measure each config and its eager fp32 baseline (once per backbone and batch)."""
    baselines: dict[ModelConfig, ModelResult] = {}
    results = []
    for config in configs:
        baseline = config.baseline
        if baseline not in baselines:
            baselines[baseline] = measure(baseline, device, steps, warmup)
            print(format_row(baselines[baseline]), flush=True)
        if config == baseline:
            results.append(baselines[baseline])
            continue
        result = measure(config, device, steps, warmup)
        result.baseline_train_clips_per_s = baselines[baseline].train_clips_per_s
        print(format_row(result), flush=True)
        results.append(result)
    return results


def format_row(result: ModelResult) -> str:
    memory = "-" if result.peak_train_memory_gib is None else f"{result.peak_train_memory_gib:.2f}"
    speedup = "baseline" if result.speedup is None else f"x{result.speedup:.2f} vs eager fp32"
    return (
        f"{result.config.label:<42} train {result.train_clips_per_s:9.1f} clips/s "
        f"({result.train_ms_per_step:8.1f} ms/step)  infer {result.infer_clips_per_s:9.1f} clips/s  "
        f"peak {memory} GiB  {speedup}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--batch", nargs="+", type=int, default=[16])
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS)
    parser.add_argument("--compile", action="store_true", help="torch.compile the module")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compression", default="log_eps")
    parser.add_argument("--backbone-args", default="{}", help='JSON kwargs, e.g. \'{"width": 0.5}\'')
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    configs = [
        ModelConfig(backbone, batch, precision, args.compile, args.channels_last, args.compression, args.backbone_args)
        for backbone in args.backbone
        for batch in args.batch
        for precision in args.precision
    ]
    print(f"lt bench model on {device_name(device)}, torch {torch.__version__}", flush=True)
    results = run(configs, device, args.steps, args.warmup)
    if args.json:
        print(json.dumps([as_json(r) for r in results], indent=2))
    return 0


def as_json(result: ModelResult) -> dict[str, Any]:
    record = asdict(result)
    record["config"] = asdict(result.config)
    record["speedup_vs_eager_fp32"] = result.speedup
    return record
