"""The data side: audio decoding, shard building and reading, the DataModule, dataset sources.

    decode_audio                 data/audio.py        bytes or path → mono float32 16 kHz
    decode_audio_keeping_pcm16   data/audio.py        the same, but int16 for 16-bit mono 16 kHz (training)
    load_clip_file               data/clip_files.py   a dataset's file → clip, or a counted reason to skip it
    load_restricted_pickle       data/safe_pickle.py  split-file pickles, without running their code
    build_shards                 data/build.py        a source's items → shards + vocab/index/stats.json
    ShardDirectory               data/directory.py    a (local or remote) shard directory's metadata
    open_stream                  data/urls.py         local paths, http(s), pipe:, fsspec URLs
    ShardReader                  data/reader.py       wanted samples of one shard; corrupt ones counted
    EvalClips, TrainPatches      data/streams.py      every eval clip once; endless training patches
    detect_distribution          data/distributed.py  rank and world size under any launcher
    select_subset                data/subsets.py      nested training subsets (data.train_size)
    TaggingDataModule            data/datamodule.py   shards → train patches / whole eval clips
    Source, register_source      data/sources/        one file per dataset (synthetic, mtt, msd, jamendo, csv)
    `lt data build|info`         data/cli.py

Names are imported lazily: building shards never imports torch or Lightning, and the
builder's worker processes start quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "decode_audio": "audio",
    "decode_audio_keeping_pcm16": "audio",
    "load_clip_file": "clip_files",
    "load_restricted_pickle": "safe_pickle",
    "build_shards": "build",
    "ShardDirectory": "directory",
    "open_stream": "urls",
    "ShardReader": "reader",
    "EvalClips": "streams",
    "TrainPatches": "streams",
    "detect_distribution": "distributed",
    "select_subset": "subsets",
    "TaggingDataModule": "datamodule",
    "Source": "sources",
    "Item": "sources",
    "register_source": "sources",
    "available_sources": "sources",
    "AudioDecodeError": "errors",
    "DataError": "errors",
    "ShardDirectoryError": "errors",
    "ShardOpenError": "errors",
    "VocabularyMismatchError": "errors",
    "BuildError": "errors",
    "SkipItem": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
