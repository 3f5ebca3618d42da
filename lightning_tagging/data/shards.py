"""The shard format: names, the audio payloads, and a byte-deterministic tar writer.

A shard directory holds::

    <root>/<split>-000000.tar ...   WebDataset tars, split in {train, valid, test}
    <root>/vocab.json               the ordered tag list (the model's output order)
    <root>/stats.json               counts per split and tag, durations, build arguments, skips
    <root>/index.json               the keys of every shard, in order ({"train-000000.tar": [key, ...]})

Each sample of a tar is two members with the same key: ``<key>.flac`` (16 kHz mono,
16-bit; ``<key>.wav`` 16-bit PCM when the payload is "pcm16") and ``<key>.json``
``{"tags": [...], "source": "..."}``. Readers decode only audio and JSON.

Tar members carry fixed metadata (mtime 0, owner 0, mode 0444), so the same samples in
the same order give the same bytes: shards can be compared and checksummed.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE

SPLITS = ("train", "valid", "test")
PAYLOADS = {"flac": ("flac", "FLAC"), "pcm16": ("wav", "WAV")}  # payload → (extension, soundfile format)
AUDIO_EXTENSIONS = tuple(ext for ext, _ in PAYLOADS.values())
VOCAB_FILE = "vocab.json"
STATS_FILE = "stats.json"
INDEX_FILE = "index.json"


def shard_name(split: str, index: int) -> str:
    """File name of shard ``index`` of ``split``: ``train-000000.tar``."""
    return f"{split}-{index:06d}.tar"


def list_shards(root: str | Path, split: str) -> list[Path]:
    """The shards of ``split`` under ``root``, in order (temporary files of a running build excluded)."""
    return sorted(Path(root).glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))


def encode_audio(waveform: np.ndarray, payload: str = "flac") -> tuple[str, bytes]:
    """Encode a 16 kHz waveform ``[samples]`` (float, saturated to [-1, 1)) as 16-bit FLAC or WAV.

    Returns:
        (file extension without the dot, encoded bytes).
    """
    extension, container = PAYLOADS[payload]
    buffer = io.BytesIO()
    sf.write(buffer, to_pcm16(waveform), SAMPLE_RATE, format=container, subtype="PCM_16")
    return extension, buffer.getvalue()


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """16-bit samples ``[samples]`` int16: ``round(x × 32768)`` saturated to [-32768, 32767].

    Done here rather than by libsndfile, whose WAV and FLAC writers round differently:
    both payloads hold the same samples.
    """
    return np.clip(np.round(np.asarray(waveform, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def quantize_pcm16(waveform: np.ndarray) -> np.ndarray:
    """``waveform`` as it decodes from a shard: :func:`to_pcm16` / 32768, float32 in [-1, 1)."""
    return (to_pcm16(waveform) / np.float32(32768.0)).astype(np.float32)


def sample_json(tags: list[str] | tuple[str, ...], source: str) -> bytes:
    """The ``<key>.json`` member of a sample."""
    return json.dumps({"tags": list(tags), "source": source}, ensure_ascii=False, sort_keys=True).encode()


class TarShardWriter:
    """Writes one shard to ``<path>.tmp`` and moves it to ``path`` on :meth:`commit`.

    A shard that exists under its final name is therefore complete; an interrupted build
    leaves at most a ``.tmp`` file, which the next build overwrites.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.temporary = self.path.with_name(self.path.name + ".tmp")
        self._tar = tarfile.open(self.temporary, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - closed by commit/abort
        self.n_samples = 0

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, key: str, audio_extension: str, audio: bytes, meta: bytes) -> None:
        """Append one sample: its encoded audio and its JSON metadata."""
        self._add(f"{key}.{audio_extension}", audio)
        self._add(f"{key}.json", meta)
        self.n_samples += 1

    def commit(self) -> None:
        """Close the tar and give it its final name (atomically)."""
        self._tar.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        """Close and delete the unfinished tar."""
        self._tar.close()
        self.temporary.unlink(missing_ok=True)


def read_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """The samples of one shard, in order: ``{"__key__": key, "<ext>": bytes, ...}`` (stdlib tarfile).

    For tools and tests; training reads shards through WebDataset (see ``streams.py``).
    """
    with tarfile.open(path, "r") as tar:
        sample: dict[str, Any] = {}
        for member in tar:
            if not member.isfile():
                continue
            key, _, extension = member.name.partition(".")
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[extension] = tar.extractfile(member).read()  # type: ignore[union-attr]
        if sample:
            yield sample


def shard_keys(path: str | Path) -> list[str]:
    """The sample keys of a local shard, in order, from its tar headers only (no audio is read)."""
    keys: list[str] = []
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            key = member.name.partition(".")[0]
            if member.isfile() and (not keys or keys[-1] != key):
                keys.append(key)
    return keys


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file, so readers never see half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
