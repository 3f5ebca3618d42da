"""decode_audio: formats, downmix, resampling, and clear errors for bad input (real files, no mocks)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_tagging.data.audio import decode_audio
from lightning_tagging.data.errors import AudioDecodeError
from lightning_tagging.errors import UserError

REAL_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-audio"


def tone(freq_hz: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def encoded(audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def peak_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_formats_decode_to_mono_float32(fmt: str, subtype: str) -> None:
    audio = decode_audio(encoded(tone(440, 1.0, 16000), 16000, fmt, subtype))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) < 200  # Vorbis may pad a little
    assert peak_frequency(audio, 16000) == pytest.approx(440, abs=2)


def test_stereo_is_averaged() -> None:
    left, right = tone(440, 0.5, 16000), np.zeros(8000, np.float32)
    audio = decode_audio(encoded(np.stack([left, right], axis=1), 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(audio, left / 2, atol=1e-6)


def test_other_rates_are_resampled_to_16k(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, tone(1000, 1.0, 44100), 44100, subtype="PCM_16")
    audio = decode_audio(path)  # a path works as well as bytes
    assert len(audio) == 16000  # ceil(44100 × 16000 / 44100)
    assert peak_frequency(audio, 16000) == pytest.approx(1000, abs=2)
    assert len(decode_audio(path, sample_rate=8000)) == 8000


@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not audio" * 10, encoded(np.zeros((0,), np.float32), 16000, "WAV", "PCM_16")],
    ids=["no-bytes", "garbage", "no-samples"],
)
def test_unreadable_or_empty_audio_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(data)
    assert isinstance(error.value, UserError)  # `lt` prints it as one line


def test_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match=r"missing\.mp3"):
        decode_audio(tmp_path / "missing.mp3")


def test_real_mp3s_decode_with_librosa_lengths() -> None:
    if not REAL_AUDIO.is_dir():
        pytest.skip(f"needs the real clips in {REAL_AUDIO} (../shared beside the repo)")
    # Lengths from ../shared/data/real-audio/README.md (librosa.load at 16 kHz).
    stereo_22k = decode_audio(REAL_AUDIO / "TRWJAZW128F42760DD_test.mp3")
    mono_16k = decode_audio((REAL_AUDIO / "joram-moments_of_clarity-08-solipsism-59-88.mp3").read_bytes())
    assert len(stereo_22k) == 479159 and len(mono_16k) == 465984
    assert 0.1 < np.abs(stereo_22k).max() <= 1.0 and 0.1 < np.abs(mono_16k).max() <= 1.0
