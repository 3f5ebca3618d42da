"""The TensorFlow-free checkpoint reader, on the real musicnn 0.1.0 checkpoints (wheel via pip)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lightning_tagging.weights import protobuf
from lightning_tagging.weights.crc32c import _register_after, crc32c
from lightning_tagging.weights.musicnn_source import checkpoint_prefix
from lightning_tagging.weights.tf_checkpoint import CheckpointFormatError, TFCheckpoint


@pytest.fixture(scope="session")
def mtt_prefix(musicnn_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return checkpoint_prefix("MTT_musicnn", wheel=musicnn_wheel, cache_dir=tmp_path_factory.mktemp("extract"))


def test_crc32c_matches_the_standard_check_value_and_the_plain_loop() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)
    assert crc32c(b"") == 0
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8).tobytes()  # long: the lane path
    assert crc32c(data) == _register_after(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_protobuf_wire_format() -> None:
    assert protobuf.read_varint(bytes([0xAC, 0x02]), 0) == (300, 2)
    # field 1 varint 150, field 2 bytes "ab", field 6 fixed32 7
    message = bytes([0x08, 0x96, 0x01, 0x12, 0x02]) + b"ab" + bytes([0x35, 7, 0, 0, 0])
    assert protobuf.parse(message) == {1: [150], 2: [b"ab"], 6: [7]}
    with pytest.raises(ValueError, match="truncated"):
        protobuf.parse(bytes([0x12, 0x05, 0x61]))


def test_reader_lists_musicnn_tensors_with_tf_shapes(mtt_prefix: str) -> None:
    ckpt = TFCheckpoint(mtt_prefix)
    shapes = {name: entry.shape for name, entry in ckpt.entries.items()}
    weights = {n for n in shapes if not n.endswith(("/Adam", "/Adam_1")) and not n.endswith("_power")}
    # 11 BN × 4 + 8 conv × 2 + 2 dense × 2 = 64 weights; Adam: 2 slots per trainable one (42) + 2 powers.
    assert len(weights) == 64 and len(shapes) == 64 + 2 * 42 + 2
    assert shapes["conv2d/kernel"] == (7, 38, 1, 204)  # HWIO: 7 frames × int(0.4·96) mels, 204 filters
    assert shapes["conv2d_1/kernel"] == (7, 67, 1, 204)
    assert shapes["conv2d_2/kernel"] == (128, 1, 1, 51)
    assert shapes["conv2d_5/kernel"] == (7, 561, 1, 64)
    assert shapes["dense/kernel"] == (1506, 200) and shapes["dense_1/kernel"] == (200, 50)
    assert shapes["batch_normalization_9/moving_variance"] == (1506,)
    assert shapes["beta1_power"] == ()
    assert all(ckpt.entries[n].dtype == np.float32 for n in shapes)


def test_reader_values_are_sane(mtt_prefix: str) -> None:
    ckpt = TFCheckpoint(mtt_prefix)
    for name in ckpt.entries:
        value = ckpt.read(name)  # every read is CRC-checked against the index
        assert value.shape == ckpt.entries[name].shape and np.isfinite(value).all(), name
        if name.endswith("moving_variance"):
            assert (value > 0).all(), name
    kernel = ckpt.read("conv2d/kernel")
    assert 1e-3 < float(kernel.std()) < 1.0  # trained weights, not zeros or garbage
    # The input BN normalises log-compressed mel values (log10(10000·x + 1) ≈ 0..5): mean ≈ 1.6.
    assert 1.0 < float(ckpt.read("batch_normalization/moving_mean")[0]) < 2.5


def test_corrupt_bundles_are_rejected_clearly(mtt_prefix: str, tmp_path: Path) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(Path(mtt_prefix), copy)
    prefix = str(copy) + os.sep
    data = copy / ".data-00000-of-00001"
    entry = TFCheckpoint(prefix).entries["dense/kernel"]
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 10] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match=r"dense/kernel.*CRC"):
        TFCheckpoint(prefix).read("dense/kernel")

    index = copy / ".index"
    raw = bytearray(index.read_bytes())
    raw[100] ^= 0xFF  # inside the first data block
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match="CRC"):
        TFCheckpoint(prefix)
    index.write_bytes(b"not a checkpoint" * 4)
    with pytest.raises(CheckpointFormatError, match="magic"):
        TFCheckpoint(prefix)
    with pytest.raises(CheckpointFormatError, match=r"not a TensorFlow checkpoint index|too short"):
        index.write_bytes(b"short")
        TFCheckpoint(prefix)
