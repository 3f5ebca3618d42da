"""`lt data build msd`: the Last.fm top-50 split from its pickled split files, read without running them.

The fixture mirrors Lee et al.'s MSD_split folder: Python 2 style pickles of id lists and of
id → 50 × 1 tag vectors (numpy arrays, as numpy < 2 named them), the 7digital id maps, and
50tagList.txt; the previews are MP3s in 7digital's ``8/9/8947470.clip.mp3`` layout.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_tagging.data.cli import main as data_main
from lightning_tagging.data.errors import BuildError
from lightning_tagging.data.shards import list_shards, read_samples
from lightning_tagging.weights.musicnn_labels import MSD_LABELS

IDS = [
    "TRAAAAK128F9318786",
    "TRAAAAW128F429D538",
    "TRAAABD128F429CF47",
    "TRAAACN128F9355673",
    "TRAAAEF128F4273421",
    "TRAAAFD128F92F423A",
]
TAGS = {
    IDS[0]: ("rock", "00s"),
    IDS[1]: ("jazz",),
    IDS[2]: ("Hip-Hop", "party"),
    IDS[3]: ("happy",),
    IDS[4]: ("rock",),
    IDS[5]: ("House", "sad"),
}
SEVEN = {msd_id: 8947470 + i for i, msd_id in enumerate(IDS)}


def py2_pickle(value: object) -> bytes:
    """A protocol-2 pickle as Python 2 wrote it: str as byte strings, numpy under numpy.core."""

    def as_bytes(v: object) -> object:
        if isinstance(v, str):
            return v.encode()
        if isinstance(v, list):
            return [as_bytes(x) for x in v]
        if isinstance(v, dict):
            return {as_bytes(k): as_bytes(x) for k, x in v.items()}
        return v

    return pickle.dumps(as_bytes(value), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def seven_path(msd_id: str) -> str:
    seven = str(SEVEN[msd_id])
    return f"{seven[0]}/{seven[1]}/{seven}.clip.mp3"


@pytest.fixture(scope="module")
def msd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("msd")
    split, audio = root / "MSD_split", root / "songs"
    split.mkdir()
    (split / "filtered_list_train.cP").write_bytes(py2_pickle(IDS[:4]))  # --n-train 3: three train, one valid
    (split / "filtered_list_test.cP").write_bytes(py2_pickle(IDS[4:]))
    vectors = {i: np.array([[tag in TAGS[i]] for tag in MSD_LABELS], dtype=np.int64) for i in IDS}
    (split / "msd_id_to_tag_vector.cP").write_bytes(py2_pickle(vectors))
    (split / "50tagList.txt").write_text("\n".join(MSD_LABELS) + "\n")
    (split / "MSD_id_to_7D_id.pkl").write_bytes(py2_pickle({i: SEVEN[i] for i in IDS}))
    (split / "7D_id_to_path.pkl").write_bytes(py2_pickle({SEVEN[i]: seven_path(i) for i in IDS}))
    t = np.arange(int(1.2 * 22050)) / 22050
    for msd_id in IDS[:-1]:  # the last preview was never downloaded
        (audio / seven_path(msd_id)).parent.mkdir(parents=True, exist_ok=True)
        sf.write(
            audio / seven_path(msd_id), (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050, format="MP3"
        )
    return split, audio


def test_build_from_the_pickled_split_files(msd: tuple[Path, Path], tmp_path: Path) -> None:
    split, audio = msd
    out = tmp_path / "out"
    assert (
        data_main(
            [
                "build",
                "msd",
                "--out",
                str(out),
                "--split-dir",
                str(split),
                "--audio-root",
                str(audio),
                "--n-train",
                "3",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    stats = json.loads((out / "stats.json").read_text())
    assert json.loads((out / "vocab.json").read_text()) == list(MSD_LABELS)
    seen = {
        s["__key__"]: (split_name, json.loads(s["json"])["tags"])
        for split_name in ("train", "valid", "test")
        for shard in list_shards(out, split_name)
        for s in read_samples(shard)
    }
    assert seen == {
        IDS[0]: ("train", ["rock", "00s"]),
        IDS[1]: ("train", ["jazz"]),
        IDS[2]: ("train", ["Hip-Hop", "party"]),
        IDS[3]: ("valid", ["happy"]),
        IDS[4]: ("test", ["rock"]),
    }
    assert [(s["key"], s["kind"]) for s in stats["skipped"]] == [(IDS[5], "missing")]
    assert stats["skipped"][0]["origin"] == seven_path(IDS[5])


def test_path_template_instead_of_the_7digital_maps(msd: tuple[Path, Path], tmp_path: Path) -> None:
    split, audio = msd
    by_id = tmp_path / "by_id"
    for msd_id in IDS[:2]:
        target = by_id / msd_id[2] / msd_id[3] / msd_id[4] / f"{msd_id}.clip.mp3"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((audio / seven_path(msd_id)).read_bytes())
    out = tmp_path / "out"
    assert (
        data_main(
            [
                "build",
                "msd",
                "--out",
                str(out),
                "--split-dir",
                str(split),
                "--audio-root",
                str(by_id),
                "--path-template",
                "{msd_id[2]}/{msd_id[3]}/{msd_id[4]}/{msd_id}.clip.mp3",
                "--n-train",
                "3",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["clips"] == 2 and stats["skipped_by_kind"] == {"missing": 4}


def test_a_pickle_that_would_run_code_is_refused(msd: tuple[Path, Path], tmp_path: Path) -> None:
    split, audio = msd
    evil_dir = tmp_path / "split"
    evil_dir.mkdir()
    for f in split.iterdir():
        (evil_dir / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "pwned"
    # what a tampered file would hold: a call to os.system
    payload = (
        b"\x80\x02cos\nsystem\nq\x00X"
        + len(f"touch {marker}").to_bytes(4, "little")
        + f"touch {marker}".encode()
        + b"\x85R."
    )
    (evil_dir / "msd_id_to_tag_vector.cP").write_bytes(payload)
    with pytest.raises(BuildError, match=r"refusing to load os\.system"):
        data_main(
            [
                "build",
                "msd",
                "--out",
                str(tmp_path / "out"),
                "--split-dir",
                str(evil_dir),
                "--audio-root",
                str(audio),
                "--n-train",
                "3",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
    assert not marker.exists()
    object_array = pickle.dumps({IDS[0]: np.array(["x"], dtype=object)}, protocol=2)
    (evil_dir / "msd_id_to_tag_vector.cP").write_bytes(object_array)
    with pytest.raises(BuildError, match="only numeric arrays"):
        data_main(
            [
                "build",
                "msd",
                "--out",
                str(tmp_path / "out2"),
                "--split-dir",
                str(evil_dir),
                "--audio-root",
                str(audio),
                "--n-train",
                "3",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
