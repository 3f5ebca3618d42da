"""Importing the published musicnn checkpoints: strict mapping, layouts, Lightning checkpoints."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_tagging.cli import main as lt_main
from lightning_tagging.errors import UserError
from lightning_tagging.frontends import LogMel
from lightning_tagging.models import VGG, Musicnn
from lightning_tagging.module import TaggingModule
from lightning_tagging.weights.musicnn_import import PUBLISHED, import_module
from lightning_tagging.weights.musicnn_labels import MSD_LABELS, MTT_LABELS
from lightning_tagging.weights.musicnn_source import checkpoint_prefix
from lightning_tagging.weights.tf_checkpoint import TFCheckpoint
from lightning_tagging.weights.tf_mapping import convert


@pytest.fixture(scope="session")
def prefixes(musicnn_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("extract")
    return {model: checkpoint_prefix(model, wheel=musicnn_wheel, cache_dir=folder) for model in PUBLISHED}


def _convert(model: str, prefix: str, shapes: dict | None = None, backbone: torch.nn.Module | None = None) -> dict:
    ckpt = TFCheckpoint(prefix)
    spec = PUBLISHED[model]
    shapes = {n: e.shape for n, e in ckpt.entries.items()} if shapes is None else shapes
    target = (backbone or spec.build_backbone()).state_dict()
    return convert(spec.layers, shapes, ckpt.read, target, model)


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_every_weight_is_used_and_every_parameter_filled(model: str, prefixes: dict[str, str]) -> None:
    state = _convert(model, prefixes[model])
    backbone = PUBLISHED[model].build_backbone()
    backbone.load_state_dict(state, strict=True)
    assert set(state) == set(backbone.state_dict())


def test_a_missing_or_extra_tensor_is_an_error(prefixes: dict[str, str]) -> None:
    shapes = {n: e.shape for n, e in TFCheckpoint(prefixes["MTT_musicnn"]).entries.items()}
    missing = {n: s for n, s in shapes.items() if n != "batch_normalization_7/gamma"}
    with pytest.raises(
        UserError, match=r"missing TF tensor 'batch_normalization_7/gamma' \(for midend_conv2.bn.weight\)"
    ):
        _convert("MTT_musicnn", prefixes["MTT_musicnn"], shapes=missing)
    extra = {**shapes, "conv2d_8/kernel": (3, 3, 1, 1)}
    with pytest.raises(UserError, match=r"'conv2d_8/kernel' \(3, 3, 1, 1\) is not used"):
        _convert("MTT_musicnn", prefixes["MTT_musicnn"], shapes=extra)


def test_a_shape_mismatch_is_an_error_naming_both_sides(prefixes: dict[str, str]) -> None:
    with pytest.raises(UserError, match=r"dense_1/kernel \(200, 50\) converts to \(50, 200\), but classifier.weight"):
        _convert("MTT_musicnn", prefixes["MTT_musicnn"], backbone=Musicnn(n_tags=10))
    with pytest.raises(UserError, match=r"gets no TF tensor|is not used"):  # a VGG mapping on a musicnn checkpoint
        _convert("MTT_vgg", prefixes["MTT_musicnn"])


def test_layouts_land_where_the_tf_graph_uses_them(prefixes: dict[str, str]) -> None:
    ckpt = TFCheckpoint(prefixes["MTT_musicnn"])
    backbone = import_module("MTT_musicnn", prefixes["MTT_musicnn"]).backbone
    k = ckpt.read("conv2d/kernel")  # [time 7, mel 38, in 1, out 204]
    assert backbone.timbral_f74.conv.weight[5, 0, 30, 2] == torch.tensor(k[2, 30, 0, 5])  # [out, in, mel, time]
    k = ckpt.read("conv2d_5/kernel")  # [time 7, channels 561, 1, filters 64]
    assert backbone.midend_conv1.conv.weight[9, 400, 6] == torch.tensor(k[6, 400, 0, 9])  # Conv1d [out, in, time]
    k = ckpt.read("dense/kernel")  # [1506, 200]
    assert backbone.dense.weight[7, 1000] == torch.tensor(k[1000, 7])
    np.testing.assert_array_equal(
        backbone.pool_bn.running_var.numpy(), ckpt.read("batch_normalization_9/moving_variance")
    )
    # musicnn builds its BNs with tf.compat.v1.layers.batch_normalization's default epsilon, 1e-3.
    assert {m.eps for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {1e-3}
    vgg = import_module("MSD_vgg", prefixes["MSD_vgg"]).backbone
    k = TFCheckpoint(prefixes["MSD_vgg"]).read("3CNN/kernel")  # [time 3, mel 3, in 128, out 128]
    assert vgg.blocks[2].conv.weight[4, 100, 0, 2] == torch.tensor(k[2, 0, 100, 4])


def test_lt_weights_import_writes_a_loadable_checkpoint(musicnn_wheel: Path, tmp_path: Path) -> None:
    assert lt_main(["weights", "import", "musicnn", "--model", "MSD_vgg", "--out", str(tmp_path),
                    "--wheel", str(musicnn_wheel)]) == 0  # fmt: skip
    path = tmp_path / "musicnn-0.1.0-MSD_vgg.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects inside
    assert checkpoint["tags"] == list(MSD_LABELS) and checkpoint["imported_from"]["model"] == "MSD_vgg"
    module = TaggingModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert isinstance(module.frontend, LogMel) and module.frontend.compression_name == "log_c"
    assert (module.frontend.n_fft, module.frontend.hop_length, module.frontend.n_mels) == (512, 256, 96)
    assert isinstance(module.backbone, VGG) and module.backbone.input_length == 187
    assert module.tags == list(MSD_LABELS)


def test_imported_checkpoint_works_for_trainer_test_and_fine_tuning(prefixes: dict[str, str], tmp_path: Path) -> None:
    """`lt test --ckpt_path` restores into a module built from a config; fine-tuning starts from the weights."""
    from lightning_tagging.weights.musicnn_import import save_lightning_checkpoint

    path = save_lightning_checkpoint(
        import_module("MTT_musicnn", prefixes["MTT_musicnn"]), "MTT_musicnn", tmp_path / "mtt.ckpt", {}
    )
    audio = 0.1 * torch.randn(2, 47616, generator=torch.Generator().manual_seed(0))
    tags = torch.zeros(2, 50)
    tags[0, 3] = tags[1, 0] = 1
    # What LightningCLI builds from a config naming LogMel(log_c) + Musicnn and MTT data.
    configured = TaggingModule(LogMel(compression="log_c"), Musicnn(n_tags=50), tags=list(MTT_LABELS))
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    clips = DataLoader([{"audio": audio[i : i + 1], "tags": tags[i : i + 1]} for i in range(2)], batch_size=None)
    trainer.test(configured, dataloaders=clips, ckpt_path=str(path), verbose=False)
    loaded = TaggingModule.load_from_checkpoint(path, map_location="cpu")
    for key, value in loaded.state_dict().items():
        assert torch.equal(configured.state_dict()[key], value), key

    before = loaded.backbone.classifier.weight.detach().clone()
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_steps=1, limit_val_batches=0)  # fmt: skip
    batches = DataLoader([{"audio": audio[i], "tags": tags[i]} for i in range(2)], batch_size=2)
    trainer.fit(loaded, train_dataloaders=batches)
    after = loaded.backbone.classifier.weight.detach()
    assert 0 < float((after - before).abs().max()) < 0.01  # one Adam step (lr 1e-3) from the published weights


def test_wrong_files_are_refused(prefixes: dict[str, str], tmp_path: Path) -> None:
    copy = tmp_path / "musicnn" / "MTT_musicnn"
    shutil.copytree(Path(prefixes["MTT_vgg"]), copy)  # VGG files where MTT_musicnn should be
    with pytest.raises(UserError, match="SHA-256"):
        checkpoint_prefix("MTT_musicnn", wheel=tmp_path)
    with pytest.raises(UserError, match="unknown musicnn model 'MSD_musicnn_big'"):
        checkpoint_prefix("MSD_musicnn_big", wheel=tmp_path)
    with pytest.raises(UserError, match="no such wheel"):
        checkpoint_prefix("MTT_vgg", wheel=tmp_path / "missing.whl")
    assert checkpoint_prefix("MTT_vgg", wheel=Path(prefixes["MTT_vgg"]).parent).endswith("MTT_vgg" + os.sep)
