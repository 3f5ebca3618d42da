"""`lt data build jamendo`: MTG-Jamendo top-50 TSVs and full-length MP3s, whole or as an excerpt."""

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

# (split file suffix, TRACK_ID, PATH, seconds, tags) as in autotagging_top50tags-*.tsv
TRACKS = [
    ("train", "track_0000214", "14/214.mp3", 6.0, ["genre---rock", "instrument---guitar"]),
    ("train", "track_0917539", "39/917539.mp3", 3.0, ["genre---funk", "genre---soundtrack"]),
    ("validation", "track_1310775", "75/1310775.mp3", 3.0, ["genre---rock", "mood/theme---happy"]),
    ("test", "track_0087483", "83/87483.mp3", 3.0, ["genre---dance"]),
    ("test", "track_0001332", "32/1332.mp3", 3.0, ["genre---electronic"]),  # its file is missing
]


@pytest.fixture(scope="module")
def jamendo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("jamendo")
    splits, audio = root / "splits" / "split-0", root / "audio"
    splits.mkdir(parents=True)
    for suffix in ("train", "validation", "test"):
        lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
        lines += [
            f"{track}\tartist_000001\talbum_000001\t{path}\t{seconds}\t" + "\t".join(tags)
            for s, track, path, seconds, tags in TRACKS
            if s == suffix
        ]
        (splits / f"autotagging_top50tags-{suffix}.tsv").write_text("\n".join(lines) + "\n")
    for _, _, path, seconds, _ in TRACKS[:-1]:
        rate = 44100
        t = np.arange(int(seconds * rate)) / rate
        ramp = (t / seconds).astype(np.float32)  # rises through the track: shows where an excerpt came from
        stereo = np.stack([0.5 * ramp * np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32)
        (audio / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio / path, stereo, rate, format="MP3")
    return splits, audio


def build(out: Path, splits: Path, audio: Path, *extra: str) -> dict:
    assert (
        data_main(
            [
                "build",
                "jamendo",
                "--out",
                str(out),
                "--splits-dir",
                str(splits),
                "--audio-root",
                str(audio),
                "--workers",
                "1",
                "--no-progress",
                *extra,
            ]
        )
        == 0
    )
    return json.loads((out / "stats.json").read_text())


def clips(out: Path) -> dict[str, tuple[str, list[str], np.ndarray]]:
    return {
        s["__key__"]: (split, json.loads(s["json"])["tags"], decode_audio(s["flac"]))
        for split in ("train", "valid", "test")
        for shard in list_shards(out, split)
        for s in read_samples(shard)
    }


def test_whole_tracks(jamendo: tuple[Path, Path], tmp_path: Path) -> None:
    stats = build(tmp_path / "whole", *jamendo)
    got = clips(tmp_path / "whole")
    assert {k: (split, tags) for k, (split, tags, _) in got.items()} == {
        "track_0000214": ("train", ["genre---rock", "instrument---guitar"]),
        "track_0917539": ("train", ["genre---funk", "genre---soundtrack"]),
        "track_1310775": ("valid", ["genre---rock", "mood/theme---happy"]),
        "track_0087483": ("test", ["genre---dance"]),
    }
    assert abs(len(got["track_0000214"][2]) - 6 * 16000) < 800  # the whole track, at 16 kHz
    assert json.loads((tmp_path / "whole" / "vocab.json").read_text()) == sorted(
        {t for *_, tags in TRACKS for t in tags}
    )  # every tag of the TSVs, by name (even the missing track's)
    assert [(s["key"], s["kind"]) for s in stats["skipped"]] == [("track_0001332", "missing")]


def test_excerpts(jamendo: tuple[Path, Path], tmp_path: Path) -> None:
    build(tmp_path / "middle", *jamendo, "--excerpt-seconds", "2")
    build(tmp_path / "start", *jamendo, "--excerpt-seconds", "2", "--excerpt-start", "start")
    middle, start = clips(tmp_path / "middle")["track_0000214"][2], clips(tmp_path / "start")["track_0000214"][2]
    assert len(middle) == len(start) == 2 * 16000
    assert np.abs(middle).max() > 1.5 * np.abs(start).max()  # seconds 2–4 of the ramp are louder than 0–2


def test_a_file_that_is_not_a_split_tsv_is_a_clear_error(jamendo: tuple[Path, Path], tmp_path: Path) -> None:
    splits, audio = jamendo
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in splits.iterdir():
        (bad / f.name).write_text("id,path,tags\n")
    with pytest.raises(BuildError, match="not an MTG-Jamendo split file"):
        build(tmp_path / "out", bad, audio)
