"""The data side: audio decoding, shard building and reading, the DataModule, dataset sources.

    decode_audio                 data/audio.py      bytes or path → mono float32 16 kHz
    build_shards                 data/build.py      a source's items → WebDataset shards
    TaggingDataModule            data/datamodule.py shards → train patches / whole eval clips
    Source, register_source      data/sources/      one file per dataset
    `lt data build|info`         data/cli.py

Names are imported lazily: building shards never imports torch or Lightning, and the
builder's worker processes start quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "decode_audio": "audio",
    "build_shards": "build",
    "TaggingDataModule": "datamodule",
    "Source": "sources",
    "Item": "sources",
    "register_source": "sources",
    "available_sources": "sources",
    "AudioDecodeError": "errors",
    "DataError": "errors",
    "ShardDirectoryError": "errors",
    "VocabularyMismatchError": "errors",
    "BuildError": "errors",
    "SkipItem": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
