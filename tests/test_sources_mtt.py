"""`lt data build mtt`: the pons and clean splits from a small MagnaTagATune in its real layout.

The fixture is annotations_final.csv as distributed (tab-separated, quoted, clip_id + 188 tag
columns + mp3_path) and MP3s in folders 0 … f, encoded here with soundfile (44.1 kHz stereo,
like the real clips), plus the bad files a real collection has.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_tagging.data.audio import decode_audio
from lightning_tagging.data.cli import main as data_main
from lightning_tagging.data.errors import BuildError
from lightning_tagging.data.shards import list_shards, read_samples
from lightning_tagging.weights.musicnn_labels import MTT_LABELS

OTHER_TAGS = [f"other tag {i}" for i in range(188 - len(MTT_LABELS))]  # the 138 rarer tags
HEADER = ["clip_id", *MTT_LABELS[:25], *OTHER_TAGS, *MTT_LABELS[25:], "mp3_path"]  # top-50 not in front

# clip_id, folder, tags, what the file is
CLIPS = [
    (2, "0", ("guitar", "classical"), "ok"),
    (6, "5", ("rock", "male vocal", "other tag 3"), "ok"),
    (10, "b", ("other tag 7",), "ok"),  # no top-50 tag: kept, all-zero target
    (35644, "b", ("piano",), "ok"),  # one of the three known-bad clips: excluded from `pons`
    (21, "a", ("techno",), "missing"),
    (25, "c", ("female voice", "choral"), "ok"),
    (27, "c", ("drums",), "corrupt"),
    (40, "d", ("slow", "piano"), "ok"),
    (41, "e", ("harp",), "empty"),
    (43, "e", ("sitar",), "short"),
    (44, "f", ("quiet",), "silent"),
    (47, "f", ("metal", "loud"), "ok"),
]


def mp3_path(clip_id: int, folder: str) -> str:
    return f"{folder}/artist-album-{clip_id:02d}-track_name-0-29.mp3"


def tone(seconds: float, rate: int = 44100, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)  # stereo


def write_audio_file(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "ok":
        sf.write(path, tone(1.5), 44100, format="MP3")
    elif kind == "corrupt":
        path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "short":
        sf.write(path, tone(0.3), 44100, format="MP3")
    elif kind == "silent":
        sf.write(path, np.zeros((44100, 2), np.float32), 44100, format="MP3")


@pytest.fixture(scope="module")
def mtt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mtt")
    with (root / "annotations_final.csv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quotechar='"', quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(HEADER)
        for clip_id, folder, tags, kind in CLIPS:
            writer.writerow([clip_id, *("1" if t in tags else "0" for t in HEADER[1:-1]), mp3_path(clip_id, folder)])
            if kind != "missing":
                write_audio_file(root / mp3_path(clip_id, folder), kind)
    return root


def samples_by_key(out: Path) -> dict[str, tuple[str, dict]]:
    return {
        s["__key__"]: (split, s)
        for split in ("train", "valid", "test")
        for shard in list_shards(out, split)
        for s in read_samples(shard)
    }


def build(out: Path, *args: str) -> dict:
    assert data_main(["build", "mtt", "--out", str(out), *args, "--shard-size", "2", "--no-progress"]) == 0
    return json.loads((out / "stats.json").read_text())


def test_pons_split(mtt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pons"
    stats = build(out, "--audio-root", str(mtt), "--workers", "2")
    samples = samples_by_key(out)
    assert json.loads((out / "vocab.json").read_text()) == list(MTT_LABELS)  # musicnn's output order
    expected = {
        f"mtt_{i:05d}": ({"c": "valid"}.get(d, "test" if d in "def" else "train"), tags)
        for i, d, tags, kind in CLIPS
        if kind == "ok" and i != 35644
    }
    assert {k: s for k, (s, _) in samples.items()} == {k: split for k, (split, _) in expected.items()}
    for key, (_, sample) in samples.items():
        meta = json.loads(sample["json"])
        assert meta["tags"] == [t for t in MTT_LABELS if t in expected[key][1]]  # top-50 only, vocab order
        assert meta["source"].startswith("mtt:") and meta["source"].endswith(".mp3")
        audio = decode_audio(sample["flac"])
        assert abs(len(audio) - 1.5 * 16000) < 0.05 * 16000  # 16 kHz mono (MP3 may pad a frame)
    assert json.loads(samples["mtt_00010"][1]["json"])["tags"] == []  # no top-50 tag: kept
    assert stats["skipped_by_kind"] == {"empty": 1, "missing": 1, "silent": 1, "too_short": 1, "unreadable": 1}
    by_key = {s["key"]: s for s in stats["skipped"]}
    assert by_key["mtt_00021"]["kind"] == "missing" and by_key["mtt_00021"]["origin"].startswith("a/")
    assert "mtt_35644" not in by_key and stats["arguments"]["excluded_clip_ids"] == ["35644", "55753", "57881"]
    # `lt data info` summarises it; a rerun finds every shard done and rewrites nothing
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert data_main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "skipped items: 5 (empty 1, missing 1, silent 1, too_short 1, unreadable 1)" in info
    build(out, "--audio-root", str(mtt), "--workers", "1")
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before


def test_clean_split_from_the_distributed_list_formats(mtt: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    # train: a numpy string array of "<index>\t<mp3_path>" (minzwon/sota-music-tagging-models)
    np.save(lists / "train.npy", np.array([f"0\t{mp3_path(2, '0')}", f"1\t{mp3_path(40, 'd')}"]))
    # valid: a Python pickle of paths (Lee et al.'s .cP files)
    (lists / "valid_list_pub.cP").write_bytes(pickle.dumps([mp3_path(47, "f")], protocol=2))
    # test: plain text, file names only
    (lists / "test.txt").write_text(Path(mp3_path(6, "5")).name + "\n" + Path(mp3_path(25, "c")).name + "\n")
    out = tmp_path / "clean"
    build(
        out,
        "--audio-root",
        str(mtt),
        "--split",
        "clean",
        "--workers",
        "1",
        "--train-list",
        str(lists / "train.npy"),
        "--valid-list",
        str(lists / "valid_list_pub.cP"),
        "--test-list",
        str(lists / "test.txt"),
    )
    assert {k: s for k, (s, _) in samples_by_key(out).items()} == {
        "mtt_00002": "train",
        "mtt_00040": "train",
        "mtt_00047": "valid",
        "mtt_00006": "test",
        "mtt_00025": "test",
    }


def test_clean_split_refuses_bad_lists(mtt: Path, tmp_path: Path) -> None:
    lists = {}
    for name, content in {
        "train": mp3_path(2, "0"),
        "test": mp3_path(40, "d"),
        "unknown": "9/no-such-clip.mp3",
        "twice": mp3_path(2, "0"),
    }.items():
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text(content + "\n")

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    lists["evil"] = tmp_path / "evil.cP"
    lists["evil"].write_bytes(pickle.dumps([Evil()], protocol=2))

    def build_clean(out: str, valid: str) -> None:
        build(
            tmp_path / out,
            "--audio-root",
            str(mtt),
            "--split",
            "clean",
            "--workers",
            "1",
            "--train-list",
            str(lists["train"]),
            "--valid-list",
            str(lists[valid]),
            "--test-list",
            str(lists["test"]),
        )

    with pytest.raises(BuildError, match="no-such-clip"):
        build_clean("a", "unknown")
    with pytest.raises(BuildError, match="refusing to load"):
        build_clean("b", "evil")
    assert not (tmp_path / "pwned").exists()  # the pickle's code never ran
    with pytest.raises(BuildError, match="both the train and the valid"):
        build_clean("c", "twice")
    with pytest.raises(BuildError, match="needs --train-list"):
        build(tmp_path / "d", "--audio-root", str(mtt), "--split", "clean")
