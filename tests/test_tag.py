"""`lt tag` end to end: a real MP3, a generated 44.1 kHz stereo WAV and a corrupt file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_tagging.cli import main as lt_main
from lightning_tagging.data.audio import decode_audio
from lightning_tagging.tag import FailedFile, Tagger, load_module
from lightning_tagging.tag_cli import output_paths
from lightning_tagging.weights.musicnn_source import WHEEL_NAME

REAL_CLIP = (
    Path(__file__).resolve().parents[2] / "shared/data/real-audio/joram-moments_of_clarity-08-solipsism-59-88.mp3"
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def lt_cache(musicnn_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `lt` cache that already holds the downloaded wheel (so pip is not asked again)."""
    cache = tmp_path / "cache"
    (cache / "pip").mkdir(parents=True)
    shutil.copy(musicnn_wheel, cache / "pip" / WHEEL_NAME)
    monkeypatch.setenv("LT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    if not REAL_CLIP.is_file():
        pytest.skip(f"the real clip is not here: this test needs {REAL_CLIP} (../shared beside the repo)")
    rate = 44100
    t = np.arange(int(rate * 7.3)) / rate  # 7.3 s: 2 patches of 2.99 s at 16 kHz, leftover dropped
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    right = 0.1 * np.random.default_rng(0).standard_normal(t.size)
    wav = tmp_path / "stereo_44k.wav"
    sf.write(wav, np.stack([left, right], axis=1), rate)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x03\x00" + bytes(range(256)) * 8)
    return [REAL_CLIP, corrupt, wav]


def test_lt_tag_end_to_end(inputs: list[Path], lt_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    argv = ["tag", *map(str, inputs), "--weights", "musicnn:MTT_musicnn", "--top", "3", "--json", "--no-progress",
            "--taggram", f"{out}/", "--embeddings", f"{out}/", "--device", "cpu"]  # fmt: skip
    assert lt_main(argv) == 1  # one file was skipped
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["file"] for r in records] == list(map(str, inputs))  # input order, failures included
    real, corrupt, generated = records
    assert [t["tag"] for t in real["top"]] == ["techno", "electronic", "synth"]  # musicnn's published top 3
    assert real["patches"] == 9 and real["patch_seconds"] == pytest.approx(187 * 256 / 16000)
    assert "error" in corrupt and f"skipped {inputs[1]}" in captured.err
    assert generated["patches"] == 2 and generated["seconds"] == pytest.approx(7.3, abs=1e-3)
    for path in inputs[::2]:
        assert (out / f"{path.stem}.png").read_bytes().startswith(PNG_MAGIC)
    assert np.load(out / f"{REAL_CLIP.stem}.npy").shape == (9, 200)
    assert np.load(out / "stereo_44k.npy").shape == (2, 200)
    converted = lt_cache / "weights" / "musicnn-0.1.0-MTT_musicnn.ckpt"
    assert converted.is_file()  # imported on the fly, cached for the next run

    # Same model from the cached checkpoint, text output, the WAV only.
    wav = inputs[2]
    assert lt_main(["tag", str(wav), "--checkpoint", str(converted), "--top", "2", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{wav}: 7.3 s, 2 patches of 2.99 s" and len(lines) == 3
    assert lines[1].split()[1] == generated["top"][0]["tag"]


def test_tagger_agrees_with_evaluation_and_batching(inputs: list[Path], lt_cache: Path) -> None:
    assert lt_main(["weights", "import", "musicnn", "--model", "MTT_vgg"]) == 0
    module = load_module(lt_cache / "weights" / "musicnn-0.1.0-MTT_vgg.ckpt")
    wav = inputs[2]
    files = [wav, inputs[1], wav]
    one = list(Tagger(module, device="cpu", batch_patches=1, decode_workers=1).tag_files(files, progress=False))
    many = list(Tagger(module, device="cpu", batch_patches=64).tag_files(files, progress=False))
    assert isinstance(one[1], FailedFile) and isinstance(many[1], FailedFile)
    for a, b in zip(one[::2], many[::2], strict=True):
        np.testing.assert_allclose(a.taggram, b.taggram, atol=1e-6)
    # Song-level probabilities are exactly what evaluation computes for the clip.
    expected = module.clip_probabilities(torch.from_numpy(decode_audio(wav))).numpy()
    np.testing.assert_allclose(many[0].probabilities, expected, atol=1e-6)


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert lt_main(["tag", "x.wav", "--weights", "musicnn:MSD_musicnn_big"]) == 2
    assert "unknown musicnn model 'MSD_musicnn_big'" in capsys.readouterr().err
    assert lt_main(["tag", "x.wav", "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert lt_main(["tag", "x.wav", "--checkpoint", str(garbage)]) == 2
    assert "cannot rebuild a TaggingModule" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        lt_main(["tag", "x.wav", "--checkpoint", "a.ckpt", "--weights", "musicnn:MTT_musicnn"])
    assert exit_info.value.code == 2


def test_output_paths() -> None:
    assert output_paths("t.png", ["a/song.mp3"], ".png") == [Path("t.png")]
    assert output_paths("t", ["a/song.mp3"], ".npy") == [Path("t.npy")]
    assert output_paths("out/t.png", ["a/x.mp3", "b/x.wav", "y.flac"], ".png") == [
        Path("out/t-x.png"),
        Path("out/t-x-2.png"),
        Path("out/t-y.png"),
    ]
    assert output_paths("dir/", ["a/x.mp3"], ".npy") == [Path("dir/x.npy")]
