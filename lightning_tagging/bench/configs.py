"""What a benchmarked model is: one configuration (backbone, batch, precision, implementation) and how to build it.

Shared by `lt bench model` (which times configurations), `lt bench estimate` (which works out
their FLOPs and memory on fake tensors) and `lt bench suite`.
"""

from __future__ import annotations

import argparse
import inspect
import json
from dataclasses import dataclass
from typing import Any

from lightning_tagging.errors import UserError
from lightning_tagging.frontends import Frontend, LogMel, Waveform
from lightning_tagging.models import BACKBONES, Backbone
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
    backbone_args: str = "{}"  # JSON, e.g. '{"width": 0.5}' (normalised by parse_backbone_args)
    compile_mode: str = "default"  # torch.compile's mode, one of compiling.COMPILE_MODES
    compile_backend: str = "inductor"  # "eager" / "aot_eager": debugging backends without code generation
    # cuDNN times its algorithms for each new shape and keeps the fastest (Trainer(benchmark=True));
    # off, it picks by heuristics. Only CUDA convolutions are affected: on a CPU this changes nothing.
    cudnn_benchmark: bool = False

    @property
    def baseline(self) -> ModelConfig:
        """The same model and batch, plain eager fp32, with the straightforward implementation."""
        # musicnn: library convs on the BN'd spectrogram, what a plain PyTorch port runs.
        args = {**json.loads(self.backbone_args), **BACKBONES[self.backbone].plain_args}
        return ModelConfig(self.backbone, self.batch, compression=self.compression,
                           backbone_args=json.dumps(args, sort_keys=True))

    @property
    def label(self) -> str:
        compile_label = "compile"
        if self.compile_mode != "default":
            compile_label += f":{self.compile_mode}"
        if self.compile_backend != "inductor":
            compile_label += f"({self.compile_backend})"
        extras = ([self.precision] + [compile_label] * self.compile + ["channels_last"] * self.channels_last
                  + ["cudnn.benchmark"] * self.cudnn_benchmark)
        args = "" if self.backbone_args == "{}" else f" {self.backbone_args}"
        return f"{self.backbone}{args} b={self.batch} {'+'.join(extras)}"


def parse_backbone_args(text: str) -> str:
    """``text`` (a JSON object of backbone kwargs) in canonical form: sorted keys, so equal args compare equal."""
    try:
        args = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"--backbone-args: not JSON: {text!r} ({error})") from error
    if not isinstance(args, dict):
        raise UserError(f"--backbone-args: expected a JSON object such as '{{\"width\": 0.5}}', got {text!r}")
    return json.dumps(args, sort_keys=True)


def accepts(backbone: str, backbone_args: str) -> bool:
    """Whether backbone ``backbone`` takes every keyword of ``backbone_args``."""
    parameters = inspect.signature(BACKBONES[backbone]).parameters
    return set(json.loads(backbone_args)) <= set(parameters)


def with_baselines(configs: list[ModelConfig]) -> list[ModelConfig]:
    """``configs`` in order, each preceded by its baseline where that is new; no config twice."""
    ordered: dict[ModelConfig, None] = {}
    for config in configs:
        ordered.setdefault(config.baseline)
        ordered.setdefault(config)
    return list(ordered)


def build_module(config: ModelConfig, n_tags: int = 50) -> TaggingModule:
    """The TaggingModule a config describes (front-end chosen by the backbone's input kind)."""
    return TaggingModule(build_frontend(config), build_backbone(config, n_tags))


def build_backbone(config: ModelConfig, n_tags: int = 50) -> Backbone:
    return BACKBONES[config.backbone](n_tags=n_tags, **json.loads(config.backbone_args))


def build_frontend(config: ModelConfig) -> Frontend:
    """The raw waveform for a waveform backbone, else a log-mel with the config's compression."""
    if BACKBONES[config.backbone].input_kind == "waveform":
        return Waveform()
    return LogMel(compression=config.compression)


def plain_configs(
    backbones: list[str], batches: list[int], precisions: list[str], variants: list[str], compression: str,
    **settings: Any,
) -> list[ModelConfig]:
    """Every (backbone, batch, variant, precision), with the same other ``settings`` (ModelConfig fields).

    A variant (canonical backbone-args JSON) whose keywords a backbone does not take
    (``conv_impl`` for samplecnn, say) is left out for that backbone, with a note, so one
    command can cover several backbones.
    """
    configs = []
    for backbone in backbones:
        for variant in variants:
            if not accepts(backbone, variant):
                print(f"note: {backbone} takes not all of {variant}; skipped for {backbone}", flush=True)
        configs += [
            ModelConfig(backbone, batch, precision, compression=compression, backbone_args=variant, **settings)
            for batch in batches
            for variant in variants
            if accepts(backbone, variant)
            for precision in precisions
        ]
    return configs


def add_config_arguments(parser: argparse.ArgumentParser, batches: list[int]) -> None:
    """The arguments that choose configurations (read back by :func:`configs_from`); ``batches``: the default."""
    parser.add_argument("--backbone", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--batch", nargs="+", type=int, default=batches)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS)
    parser.add_argument("--compression", default="log_eps")
    parser.add_argument("--backbone-args", nargs="+", default=["{}"],
                        help='JSON kwargs, one variant per argument, e.g. \'{"width": 0.5}\' \'{"width": 1.0}\'')


def configs_from(args: argparse.Namespace, **settings: Any) -> list[ModelConfig]:
    """Every (backbone, batch, backbone-args variant, precision) the arguments ask for, with ``settings``."""
    variants = [parse_backbone_args(text) for text in args.backbone_args]
    return plain_configs(args.backbone, args.batch, args.precision, variants, args.compression, **settings)
