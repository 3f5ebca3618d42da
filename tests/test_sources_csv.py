"""`lt data build csv`: a user's own collection from a manifest, in every audio format soundfile reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_tagging.data.audio import decode_audio
from lightning_tagging.data.cli import main as data_main
from lightning_tagging.data.errors import BuildError
from lightning_tagging.data.shards import list_shards, read_samples
from lightning_tagging.data.sources.csv_manifest import split_by_hash

# file, format, rate, channels
FILES = [
    ("songs/a song.mp3", "MP3", 44100, 2),
    ("songs/b.flac", "FLAC", 48000, 1),
    ("c.wav", "WAV", 16000, 2),
    ("d.ogg", "OGG", 22050, 1),
]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("collection")
    for name, fmt, rate, channels in FILES:
        t = np.arange(int(1.25 * rate)) / rate
        audio = np.stack([0.4 * np.sin(2 * np.pi * 440 * t)] * channels, axis=1).astype(np.float32)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, audio, rate, format=fmt)
    return root


def build(*args: str) -> None:
    assert data_main(["build", "csv", *args, "--workers", "1", "--no-progress"]) == 0


def contents(out: Path) -> dict[str, tuple[str, list[str], int]]:
    return {
        s["__key__"]: (split, json.loads(s["json"])["tags"], len(decode_audio(s["flac"])))
        for split in ("train", "valid", "test")
        for shard in list_shards(out, split)
        for s in read_samples(shard)
    }


def test_manifest_with_a_split_column(collection: Path, tmp_path: Path) -> None:
    manifest = collection / "clips.csv"
    manifest.write_text(
        "path,tags,split\n"
        '"songs/a song.mp3","rock; guitar ;male vocal",train\n'
        "songs/b.flac,rock,validation\n"
        "c.wav,piano;rock,test\n"
        "d.ogg,guitar,train\n"
        "missing.wav,rock,train\n"
    )
    out = tmp_path / "out"
    build("--out", str(out), "--manifest", str(manifest))
    got = contents(out)
    assert {k: v[:2] for k, v in got.items()} == {
        "songs_a_song": ("train", ["rock", "guitar", "male vocal"]),
        "songs_b": ("valid", ["rock"]),
        "c": ("test", ["piano", "rock"]),
        "d": ("train", ["guitar"]),
    }
    assert all(abs(n - 20000) < 600 for *_, n in got.values())  # 1.25 s at 16 kHz, from 16–48 kHz, mono or stereo
    assert json.loads((out / "vocab.json").read_text()) == ["rock", "guitar", "male vocal", "piano"]  # by frequency
    stats = json.loads((out / "stats.json").read_text())
    assert [(s["key"], s["kind"], s["origin"]) for s in stats["skipped"]] == [("missing", "missing", "missing.wav")]


def test_tsv_with_pipes_keys_and_a_split_ratio(collection: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "clips.tsv"
    rows = [
        f"id{i}\t{collection / name}\tjazz|{'vocal' if i % 2 else 'instrumental'}" for i, (name, *_) in enumerate(FILES)
    ]
    manifest.write_text("clip\tfile\tlabels\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    build(
        "--out",
        str(out),
        "--manifest",
        str(manifest),
        "--path-column",
        "file",
        "--tags-column",
        "labels",
        "--key-column",
        "clip",
        "--split-ratio",
        "0.5",
        "0.25",
        "0.25",
    )
    got = contents(out)
    assert {k: v[0] for k, v in got.items()} == {f"id{i}": split_by_hash(f"id{i}", (0.5, 0.25, 0.25)) for i in range(4)}
    assert got["id1"][1] == ["jazz", "vocal"]


def test_manifest_mistakes_are_clear_errors(collection: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,tags\nc.wav,rock\n")
    with pytest.raises(BuildError, match=r"no column 'split'.*--split-ratio"):
        build("--out", str(tmp_path / "a"), "--manifest", str(manifest))
    manifest.write_text("path,tags,split\nc.wav,rock|jazz,train\nd.ogg,rock;pop,train\n")
    with pytest.raises(BuildError, match=r"both ';' and '\|'"):
        build("--out", str(tmp_path / "b"), "--manifest", str(manifest), "--audio-root", str(collection))
    manifest.write_text("path,tags,split\nc.wav,rock,training\n")
    with pytest.raises(BuildError, match="split 'training'"):
        build("--out", str(tmp_path / "c"), "--manifest", str(manifest), "--audio-root", str(collection))


def test_split_by_hash_keeps_proportions_and_is_stable() -> None:
    splits = [split_by_hash(f"clip{i}", (0.8, 0.1, 0.1)) for i in range(5000)]
    assert 0.78 < splits.count("train") / 5000 < 0.82 and 0.08 < splits.count("test") / 5000 < 0.12
    assert splits == [split_by_hash(f"clip{i}", (8, 1, 1)) for i in range(5000)]  # depends on the key alone
