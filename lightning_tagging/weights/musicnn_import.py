"""The published musicnn checkpoints (``musicnn`` 0.1.0 on PyPI) as TaggingModule checkpoints.

Four TF1 checkpoints ship inside the package: ``MTT_musicnn``, ``MSD_musicnn`` (our
:class:`~lightning_tagging.models.Musicnn`) and ``MTT_vgg``, ``MSD_vgg`` (our
:class:`~lightning_tagging.models.VGG`), trained on 96-band log-mel patches of 187 frames
(16 kHz, n_fft 512, hop 256) compressed with log10(10000·X + 1) (our ``log_c``). The TF
variable names below follow the creation order of ``musicnn/models.py`` (checked against the
checkpoints' index, and numerically against the TF models by ``tests/test_weights_parity.py``).

The import is strict (see :mod:`.tf_mapping`): every weight of the checkpoint lands in exactly
one torch tensor; only Adam's optimizer state is left behind.

BatchNorm: musicnn uses ``tf.compat.v1.layers.batch_normalization`` with its default epsilon
1e-3, which our models use too (``BN_EPS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_tagging.errors import UserError
from lightning_tagging.frontends import LogMel
from lightning_tagging.models import VGG, Musicnn
from lightning_tagging.models.base import Backbone
from lightning_tagging.module import TaggingModule
from lightning_tagging.weights.musicnn_labels import MSD_LABELS, MTT_LABELS
from lightning_tagging.weights.tf_checkpoint import TFCheckpoint
from lightning_tagging.weights.tf_mapping import Layer, convert

MUSICNN_VERSION = "0.1.0"
# LightningCLI's instantiator: lets TaggingModule.load_from_checkpoint rebuild the front-end and
# backbone from the class_path/init_args stored in hyper_parameters (Lightning allow-lists it).
INSTANTIATOR = "pytorch_lightning.cli.instantiate_module"

# musicnn/configuration.py: SR, FFT_SIZE, FFT_HOP, N_MELS; n_frames from input_length = 3 s.
FRONTEND_ARGS: dict[str, Any] = {
    "compression": "log_c",
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "f_min": 0.0,
    "f_max": None,
}
N_FRAMES = 187


def _musicnn_layers() -> list[Layer]:
    """musicnn's ``build_musicnn``: one input BN, 5 front-end convs, 3 mid-end convs, back-end."""
    layers = [Layer("input_bn", "batch_normalization", "batch_norm")]
    frontend = ("timbral_f74", "timbral_f77", "temporal_s1", "temporal_s2", "temporal_s3")
    for i, name in enumerate(frontend):  # conv2d..conv2d_4, each followed by batch_normalization_{1..5}
        layers += [Layer(f"{name}.conv", f"conv2d_{i}" if i else "conv2d", "conv2d")]
        layers += [Layer(f"{name}.bn", f"batch_normalization_{i + 1}", "batch_norm")]
    for i in range(3):  # conv2d_5..7: 2-D convs whose kernel spans all channels = Conv1d
        layers += [Layer(f"midend_conv{i + 1}.conv", f"conv2d_{i + 5}", "conv2d_as_conv1d")]
        layers += [Layer(f"midend_conv{i + 1}.bn", f"batch_normalization_{i + 6}", "batch_norm")]
    layers += [
        Layer("pool_bn", "batch_normalization_9", "batch_norm"),
        Layer("dense", "dense", "dense"),
        Layer("dense_bn", "batch_normalization_10", "batch_norm"),
        Layer("classifier", "dense_1", "dense"),
    ]
    return layers


def _vgg_layers() -> list[Layer]:
    """musicnn's ``vgg``: input BN, five named convs ``1CNN``..``5CNN`` each with a BN, one dense."""
    layers = [Layer("input_bn", "batch_normalization", "batch_norm")]
    for i in range(5):
        layers += [Layer(f"blocks.{i}.conv", f"{i + 1}CNN", "conv2d")]
        layers += [Layer(f"blocks.{i}.bn", f"batch_normalization_{i + 1}", "batch_norm")]
    return [*layers, Layer("classifier", "dense", "dense")]


@dataclass(frozen=True)
class PublishedModel:
    """One checkpoint of the musicnn package and the model of ours it loads into."""

    name: str
    backbone_class: type[Backbone]
    backbone_args: dict[str, Any]
    tags: tuple[str, ...]
    layers: tuple[Layer, ...]

    def build_backbone(self) -> Backbone:
        return self.backbone_class(**self.backbone_args)


_MUSICNN_ARGS = {"n_tags": 50, "n_mels": 96, "n_frames": N_FRAMES, "midend_filters": 64, "dense_units": 200}
_VGG_ARGS = {"n_tags": 50, "n_mels": 96, "n_frames": N_FRAMES, "filters": 128}

# musicnn/models.py define_model: musicnn models with 64 mid-end filters and 200 units, VGG with 128 filters.
PUBLISHED: dict[str, PublishedModel] = {
    "MTT_musicnn": PublishedModel("MTT_musicnn", Musicnn, _MUSICNN_ARGS, MTT_LABELS, tuple(_musicnn_layers())),
    "MSD_musicnn": PublishedModel("MSD_musicnn", Musicnn, _MUSICNN_ARGS, MSD_LABELS, tuple(_musicnn_layers())),
    "MTT_vgg": PublishedModel("MTT_vgg", VGG, _VGG_ARGS, MTT_LABELS, tuple(_vgg_layers())),
    "MSD_vgg": PublishedModel("MSD_vgg", VGG, _VGG_ARGS, MSD_LABELS, tuple(_vgg_layers())),
}


def published_model(name: str) -> PublishedModel:
    """The :class:`PublishedModel` called ``name``; UserError naming the valid ones."""
    if name not in PUBLISHED:
        raise UserError(f"unknown musicnn model {name!r}; choose one of {', '.join(PUBLISHED)}")
    return PUBLISHED[name]


def import_module(model: str, checkpoint_prefix: str | Path) -> TaggingModule:
    """A TaggingModule (LogMel log_c + Musicnn/VGG, musicnn's tags) holding a TF checkpoint's weights.

    Args:
        model: one of :data:`PUBLISHED`.
        checkpoint_prefix: the TF bundle prefix, e.g. ``<site-packages>/musicnn/MTT_musicnn/``.
    """
    spec = published_model(model)
    checkpoint = TFCheckpoint(checkpoint_prefix)
    backbone = spec.build_backbone()
    shapes = {name: entry.shape for name, entry in checkpoint.entries.items()}
    state = convert(spec.layers, shapes, checkpoint.read, backbone.state_dict(), f"musicnn {model}")
    backbone.load_state_dict(state, strict=True)
    module = TaggingModule(frontend=LogMel(**FRONTEND_ARGS), backbone=backbone, tags=list(spec.tags))
    return module.eval()


def hyper_parameters(model: str) -> dict[str, Any]:
    """What ``TaggingModule.load_from_checkpoint`` needs to rebuild the module without arguments."""
    spec = published_model(model)
    backbone = spec.backbone_class
    return {
        "frontend": {"class_path": f"{LogMel.__module__}.{LogMel.__qualname__}", "init_args": dict(FRONTEND_ARGS)},
        "backbone": {
            "class_path": f"{backbone.__module__}.{backbone.__qualname__}",
            "init_args": dict(spec.backbone_args),
        },
        "tags": list(spec.tags),
        "_instantiator": INSTANTIATOR,
    }


def save_lightning_checkpoint(module: TaggingModule, model: str, path: Path, source: dict[str, str]) -> Path:
    """Write ``module`` as a Lightning checkpoint (``weights_only``-loadable: tensors, lists, strings).

    Args:
        module: the imported module.
        model: its :data:`PUBLISHED` name.
        path: the ``.ckpt`` file to write (parent folders are created; written atomically).
        source: provenance stored under ``"imported_from"`` (package, version, file hashes).
    """
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": pl.__version__,
        "state_dict": {key: value.detach().cpu() for key, value in module.state_dict().items()},
        "hyper_parameters": hyper_parameters(model),
        "hparams_name": "kwargs",
        "tags": list(module.tags),  # what TaggingModule.on_load_checkpoint compares with the data's vocabulary
        "imported_from": {"package": "musicnn", "version": MUSICNN_VERSION, "model": model, **source},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(path)
    return path
