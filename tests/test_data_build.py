"""The shard builder: round trip, determinism, resuming, skipped items, the `lt data` commands.

Real tar shards from a tiny synthetic corpus (2–4 s clips keep it fast).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_tagging.data.audio import decode_audio
from lightning_tagging.data.build import build_shards
from lightning_tagging.data.cli import main as data_main
from lightning_tagging.data.errors import BuildError, SkipItem
from lightning_tagging.data.shards import list_shards, quantize_pcm16, read_samples
from lightning_tagging.data.sources import Item, Source, available_sources
from lightning_tagging.data.sources.synthetic import SyntheticSource, synthesize

TINY = {"n_clips": 24, "seed": 3, "min_seconds": 2.0, "max_seconds": 4.0}


def tiny_source(**overrides: Any) -> SyntheticSource:
    return SyntheticSource(**{**TINY, **overrides})


def build(out: Path, workers: int = 1, **kwargs: Any) -> dict[str, Any]:
    return build_shards(tiny_source(), out, workers=workers, shard_size=kwargs.pop("shard_size", 4),
                        progress=False, **kwargs)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


@pytest.mark.parametrize("payload", ["flac", "pcm16"])
def test_round_trip_audio_and_tags(tmp_path: Path, payload: str) -> None:
    stats = build(tmp_path, payload=payload)
    items = {item.key: item for item in tiny_source().items()}
    seen = {}
    for split in ("train", "valid", "test"):
        for shard in list_shards(tmp_path, split):
            for sample in read_samples(shard):
                key = sample["__key__"]
                assert set(sample) == {"__key__", "flac" if payload == "flac" else "wav", "json"}
                meta = json.loads(sample["json"])
                item = items[key]
                assert item.split == split and meta["tags"] == list(item.tags)
                assert meta["source"] == f"synthetic:{item.origin}"
                audio = decode_audio(sample["flac" if payload == "flac" else "wav"])
                # 16-bit either way, and both codecs are lossless for 16-bit samples: exact.
                np.testing.assert_array_equal(audio, quantize_pcm16(synthesize(3, int(key[-7:]), 2.0, 4.0)))
                seen[key] = len(audio)
    assert sorted(seen) == sorted(items)
    assert stats["clips"] == 24 and stats["skipped"] == []
    assert stats["seconds"] == pytest.approx(sum(seen.values()) / 16000, abs=1e-2)
    assert json.loads((tmp_path / "vocab.json").read_text()) == tiny_source().vocab()
    assert sum(s["shards"] for s in stats["splits"].values()) == len(list(tmp_path.glob("*.tar")))


def test_same_arguments_give_identical_shards_whatever_the_workers(tmp_path: Path) -> None:
    inline = file_bytes_after(build, tmp_path / "a", workers=1)
    pooled = file_bytes_after(build, tmp_path / "b", workers=2)
    assert inline == pooled
    assert {name for name in inline if name.endswith(".tar")} >= {"train-000000.tar", "valid-000000.tar"}


def file_bytes_after(fn: Any, out: Path, **kwargs: Any) -> dict[str, bytes]:
    fn(out, **kwargs)
    return file_bytes(out)


def test_resume_rewrites_only_missing_shards(tmp_path: Path) -> None:
    build(tmp_path)
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in tmp_path.glob("*.tar")}
    original = file_bytes(tmp_path)
    (tmp_path / "train-000001.tar").unlink()
    (tmp_path / "train-000001.tar.tmp").write_bytes(b"half a shard from an interrupted build")
    build(tmp_path)
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in tmp_path.glob("*.tar")}
    assert set(after) == set(before)
    assert [name for name in before if after[name] != before[name]] == ["train-000001.tar"]
    assert file_bytes(tmp_path) == original  # the rebuilt shard is byte-identical
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_with_other_arguments_is_refused(tmp_path: Path) -> None:
    build(tmp_path)
    with pytest.raises(BuildError, match="payload"):
        build(tmp_path, payload="pcm16")


# --- a source with bad items (workers=1: loaders run inline) --------------------------------


def _good() -> np.ndarray:
    return np.zeros(1600, np.float32) + 0.25


def _undecodable() -> np.ndarray:
    return decode_audio(b"not audio at all")


def _too_short() -> np.ndarray:
    raise SkipItem("shorter than 1 s")


class FlakySource(Source):
    name = "flaky"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:  # pragma: no cover - unused
        pass

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> FlakySource:  # pragma: no cover - unused
        return cls()

    def items(self) -> Iterator[Item]:
        loaders = [_good, _undecodable, _good, _too_short, _good]
        for i, load in enumerate(loaders):
            tags = ("a", "b") if i in (0, 4) else ("b",)
            yield Item(f"clip{i}", "train", tags, functools.partial(load), origin=str(i))

    def arguments(self) -> dict[str, Any]:
        return {}


def test_failing_items_are_skipped_and_counted(tmp_path: Path) -> None:
    stats = build_shards(FlakySource(), tmp_path, workers=1, shard_size=2, progress=False)
    assert [(s["key"], s["split"]) for s in stats["skipped"]] == [("clip1", "train"), ("clip3", "train")]
    assert "cannot decode" in stats["skipped"][0]["reason"] and stats["skipped"][1]["reason"] == "shorter than 1 s"
    assert stats["splits"]["train"] == {"clips": 3, "shards": 3, "seconds": 0.3}
    keys = [s["__key__"] for shard in list_shards(tmp_path, "train") for s in read_samples(shard)]
    assert keys == ["clip0", "clip2", "clip4"]  # shard 1 (clip2, clip3) holds one clip
    # no fixed vocabulary: all tags, most frequent first
    assert json.loads((tmp_path / "vocab.json").read_text()) == ["b", "a"]


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    class DottedSource(FlakySource):
        def items(self) -> Iterator[Item]:
            yield Item("a.b", "train", ("x",), _good)

    with pytest.raises(BuildError, match="dots"):
        build_shards(DottedSource(), tmp_path, workers=1, progress=False)


# --- the commands ---------------------------------------------------------------------------


def test_synthetic_is_registered() -> None:
    assert available_sources()["synthetic"] is SyntheticSource


def test_cli_build_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shards"
    code = data_main(["build", "synthetic", "--out", str(out), "--n-clips", "12", "--seed", "1", "--min-seconds", "1",
                      "--max-seconds", "2", "--workers", "1", "--shard-size", "5", "--payload", "pcm16",
                      "--no-progress"])
    assert code == 0 and (out / "stats.json").is_file()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["arguments"]["payload"] == "pcm16" and stats["arguments"]["n_clips"] == 12
    assert data_main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "12 clips" in printed and "female vocal" in printed and "train" in printed


def test_cli_info_on_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="lt data build synthetic"):
        data_main(["info", str(tmp_path / "nowhere")])
