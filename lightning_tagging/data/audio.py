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
    name = f"{len(data)} bytes of audio" if isinstance(data, bytes | bytearray) else str(data)
    try:
        stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else str(data)
        with sf.SoundFile(stream) as f:
            rate = f.samplerate
            audio = f.read(dtype="float32", always_2d=True)  # [samples, channels]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as error:
        raise AudioDecodeError(f"cannot decode {name}: {error}") from error
    if audio.size == 0:
        raise AudioDecodeError(f"{name} holds no audio samples")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if not np.isfinite(mono).all():
        raise AudioDecodeError(f"{name} decodes to non-finite samples (NaN or inf)")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
        # librosa's length, ceil(n × ratio) (soxr rounds): the same clip decodes to the same
        # number of samples as with librosa.load, which reference pipelines use.
        mono = fix_length(mono, math.ceil(len(audio) * sample_rate / rate))
    return np.ascontiguousarray(mono, dtype=np.float32)


def fix_length(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """``waveform`` cut or zero-padded at the end to exactly ``n_samples``."""
    if len(waveform) >= n_samples:
        return waveform[:n_samples]
    return np.pad(waveform, (0, n_samples - len(waveform)))
