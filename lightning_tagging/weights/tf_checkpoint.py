"""Read TensorFlow 1 checkpoint bundles without TensorFlow.

A bundle saved with prefix ``P`` is ``P.index`` plus ``P.data-0000i-of-0000n``. The index is
a LevelDB-format table (SSTable): sorted string keys → values, stored in blocks with a
48-byte footer. Its key ``""`` holds a ``BundleHeaderProto``; every other key is a tensor
name whose value is a ``BundleEntryProto`` saying where that tensor's raw little-endian
bytes lie in which data shard. Formats: tensorflow/core/lib/io/format.cc,
tensorflow/core/protobuf/tensor_bundle.proto, tensorflow/core/framework/types.proto.

Only what checkpoints of plain variables use is supported (uncompressed table blocks,
numeric dtypes, unpartitioned tensors); anything else is rejected with a clear error.
Every block and every tensor read is checked against its stored CRC-32C.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_tagging.errors import UserError
from lightning_tagging.weights import protobuf
from lightning_tagging.weights.crc32c import crc32c, masked_crc32c

TABLE_MAGIC = 0xDB4775248B80FB57  # leveldb/table/format.h kTableMagicNumber
FOOTER_BYTES = 48  # two block handles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked CRC-32C (4 bytes)

# tensorflow/core/framework/types.proto DataType → numpy (little-endian); strings are not supported.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


class CheckpointFormatError(UserError):
    """The files are not a TF1 checkpoint bundle this reader understands."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: ``size`` bytes at ``offset`` of data shard ``shard_id``."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked CRC-32C of the bytes, when stored


# --- the table (SSTable) layer -------------------------------------------------------------


def _block(table: bytes, handle: bytes, what: str) -> bytes:
    """Contents of the block that ``handle`` (varint offset, varint size) points at, CRC-checked."""
    offset, pos = protobuf.read_varint(handle, 0)
    size, _ = protobuf.read_varint(handle, pos)
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(table):
        raise CheckpointFormatError(f"{what}: block [{offset}, {end}) runs past the end of the index file")
    contents, kind = table[offset:end], table[end]
    (stored_crc,) = struct.unpack_from("<I", table, end + 1)
    if kind != 0:
        raise CheckpointFormatError(f"{what}: compressed table blocks (type {kind}) are not supported")
    if masked_crc32c(table[offset : end + 1]) != stored_crc:
        raise CheckpointFormatError(f"{what}: block at offset {offset} fails its CRC check (corrupt file?)")
    return contents


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (keys are prefix-compressed against the previous key)."""
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = protobuf.read_varint(block, pos)
        unshared, pos = protobuf.read_varint(block, pos)
        value_length, pos = protobuf.read_varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def read_table(path: Path) -> dict[bytes, bytes]:
    """All key → value pairs of a LevelDB-format table file, in key order."""
    table = path.read_bytes()
    if len(table) < FOOTER_BYTES:
        raise CheckpointFormatError(f"{path} is too short to be a checkpoint index ({len(table)} bytes)")
    footer = table[-FOOTER_BYTES:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_BYTES - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointFormatError(f"{path} is not a TensorFlow checkpoint index (bad table magic)")
    _, pos = protobuf.read_varint(footer, 0)  # skip the metaindex handle: bundles keep no meta blocks
    _, pos = protobuf.read_varint(footer, pos)
    index_handle = footer[pos:]
    entries: dict[bytes, bytes] = {}
    for _, data_handle in _block_entries(_block(table, index_handle, str(path))):
        entries.update(_block_entries(_block(table, data_handle, str(path))))
    return entries


# --- the bundle layer ------------------------------------------------------------------------


def _shape(message: bytes) -> tuple[int, ...]:
    """Dimensions of a ``TensorShapeProto`` (``dim`` = field 2, each ``Dim.size`` = field 1)."""
    fields = protobuf.parse(message)
    if protobuf.last(fields, 3, 0):
        raise CheckpointFormatError("a tensor of unknown rank cannot be read")
    return tuple(int(protobuf.last(protobuf.parse(dim), 1, 0)) for dim in fields.get(2, []))


def _entry(name: str, value: bytes) -> TensorEntry:
    """Decode one ``BundleEntryProto``."""
    fields = protobuf.parse(value)
    if 7 in fields:
        raise CheckpointFormatError(f"tensor {name!r} is partitioned (slices); only whole tensors are supported")
    dtype_code = int(protobuf.last(fields, 1, 0))
    if dtype_code not in DTYPES:
        raise CheckpointFormatError(f"tensor {name!r} has TF dtype {dtype_code}, which is not supported")
    crc = protobuf.last(fields, 6, None)
    return TensorEntry(
        name=name,
        dtype=DTYPES[dtype_code],
        shape=_shape(protobuf.last(fields, 2, b"")),
        shard_id=int(protobuf.last(fields, 3, 0)),
        offset=int(protobuf.last(fields, 4, 0)),
        size=int(protobuf.last(fields, 5, 0)),
        crc32c=None if crc is None else int(crc),
    )


class TFCheckpoint:
    """A TF1 checkpoint bundle opened for reading: names, shapes and float values, no TensorFlow.

    Args:
        prefix: the bundle's prefix, e.g. ``musicnn/MTT_musicnn/`` for the files
            ``musicnn/MTT_musicnn/.index`` and ``musicnn/MTT_musicnn/.data-00000-of-00001``.

    Example:
        >>> ckpt = TFCheckpoint("musicnn/MTT_musicnn/")
        >>> ckpt.entries["conv2d/kernel"].shape   # (7, 38, 1, 204): TF's HWIO
        >>> kernel = ckpt.read("conv2d/kernel")   # np.ndarray float32
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        index = Path(self.prefix + ".index")
        if not index.is_file():
            raise UserError(f"no TensorFlow checkpoint index at {index}; pass the bundle's prefix (without .index)")
        table = read_table(index)
        header = protobuf.parse(table.pop(b"", b""))
        self.num_shards = int(protobuf.last(header, 1, 1))
        if protobuf.last(header, 2, 0) != 0:
            raise CheckpointFormatError(f"{index} was written big-endian; only little-endian bundles are supported")
        self.entries: dict[str, TensorEntry] = {}
        for key, value in table.items():
            name = key.decode("utf-8")
            self.entries[name] = _entry(name, value)

    def data_path(self, shard_id: int) -> Path:
        """Path of data shard ``shard_id``."""
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a numpy array of its stored dtype and shape (checked against its CRC)."""
        if name not in self.entries:
            raise KeyError(f"no tensor {name!r} in checkpoint {self.prefix!r}")
        entry = self.entries[name]
        expected = int(np.prod(entry.shape, dtype=np.int64)) * entry.dtype.itemsize
        if entry.size != expected:
            raise CheckpointFormatError(f"tensor {name!r}: {entry.size} bytes stored, {expected} expected")
        with open(self.data_path(entry.shard_id), "rb") as data:
            data.seek(entry.offset)
            raw = data.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointFormatError(f"tensor {name!r} runs past the end of {self.data_path(entry.shard_id)}")
        if entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise CheckpointFormatError(f"tensor {name!r} fails its CRC check (corrupt data file?)")
        return np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape).copy()


__all__ = ["CheckpointFormatError", "TFCheckpoint", "TensorEntry", "crc32c", "read_table"]
