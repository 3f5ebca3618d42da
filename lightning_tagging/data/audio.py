"""Audio decoding: bytes or a file → mono float32 waveform at the sample rate we want.

Only libsndfile touches the bytes (via soundfile): WAV, FLAC, OGG/Vorbis, Opus, MP3 and
everything else libsndfile reads. Nothing here unpickles anything.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioDecodeError

SAMPLE_RATE = 16000


def read_mono(data: bytes | str | Path) -> tuple[np.ndarray, int]:
    """Decode audio at its own rate and average its channels.

    Args:
        data: the encoded file's bytes, or a path to it.

    Returns:
        (``[samples]`` float32 nominally in [-1, 1], the file's sample rate in Hz). May be empty.

    Raises:
        AudioDecodeError: unreadable or unsupported data, a missing file, or non-finite samples.
    """
    name = describe_input(data)
    try:
        stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else str(data)
        with sf.SoundFile(stream) as f:
            rate = f.samplerate
            audio = f.read(dtype="float32", always_2d=True)  # [samples, channels]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as error:
        raise AudioDecodeError(f"cannot decode {name}: {error}") from error
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if not np.isfinite(mono).all():
        raise AudioDecodeError(f"{name} decodes to non-finite samples (NaN or inf)")
    return mono, rate


def resample(mono: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``mono`` ``[samples]`` at ``rate`` Hz → float32 at ``sample_rate`` Hz (soxr HQ).

    The result has librosa's length, ``ceil(samples × sample_rate / rate)`` (soxr rounds), so
    the same clip decodes to the same number of samples as with librosa.load, which
    reference pipelines use.
    """
    if rate != sample_rate:
        n_out = math.ceil(len(mono) * sample_rate / rate)
        mono = fix_length(soxr.resample(mono, rate, sample_rate, quality="HQ"), n_out)
    return np.ascontiguousarray(mono, dtype=np.float32)


def decode_audio(data: bytes | str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode audio to a mono waveform.

    Args:
        data: the encoded file's bytes, or a path to it.
        sample_rate: rate of the result in Hz; the file is resampled with soxr (HQ) when
            its own rate differs, to ``ceil(samples × sample_rate / file rate)`` samples.

    Returns:
        ``[samples]`` float32, channels averaged (downmix), nominally in [-1, 1].

    Raises:
        AudioDecodeError: unreadable or unsupported data, a missing file, no samples, or
            samples that are not finite.
    """
    mono, rate = read_mono(data)
    if mono.size == 0:
        raise AudioDecodeError(f"{describe_input(data)} holds no audio samples")
    return resample(mono, rate, sample_rate)


def describe_input(data: bytes | str | Path) -> str:
    """How error messages name ``data``."""
    return f"{len(data)} bytes of audio" if isinstance(data, bytes | bytearray) else str(data)


def fix_length(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """``waveform`` cut or zero-padded at the end to exactly ``n_samples``."""
    if len(waveform) >= n_samples:
        return waveform[:n_samples]
    return np.pad(waveform, (0, n_samples - len(waveform)))
