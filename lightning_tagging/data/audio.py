"""Audio decoding: bytes or a file → mono float32 waveform at the sample rate we want.

Only libsndfile touches the bytes (via soundfile): WAV, FLAC, OGG/Vorbis, Opus, MP3 and
everything else libsndfile reads. Nothing here unpickles anything.

Training may keep 16-bit samples as int16 (:func:`decode_audio_keeping_pcm16`): shards hold
16 kHz mono 16-bit PCM, whose float32 decoding is exactly ``int16 / 32768`` (libsndfile's
scale), so the conversion can wait until the batch is on the device at half the bytes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import AudioDecodeError

SAMPLE_RATE = 16000
PCM16_SCALE = 32768  # libsndfile reads 16-bit sample s as the float s / 32768 (exact: a power of two)


def read_mono(data: bytes | str | Path) -> tuple[np.ndarray, int]:
    """Decode audio at its own rate and average its channels.

    Args:
        data: the encoded file's bytes, or a path to it.

    Returns:
        (``[samples]`` float32 nominally in [-1, 1], the file's sample rate in Hz). May be empty.

    Raises:
        AudioDecodeError: unreadable or unsupported data, a missing file, or non-finite samples.
    """
    return _read(data, keep_pcm16_at=None)


def _read(data: bytes | str | Path, keep_pcm16_at: int | None) -> tuple[np.ndarray, int]:
    """:func:`read_mono`, except that a 16-bit mono file at ``keep_pcm16_at`` Hz gives its int16 samples.

    One open of the file decides and decodes: the header says subtype, channels and rate.
    """
    name = describe_input(data)
    try:
        stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else str(data)
        with sf.SoundFile(stream) as f:
            rate = f.samplerate
            exact = rate == keep_pcm16_at and f.subtype == "PCM_16" and f.channels == 1
            audio = f.read(dtype="int16" if exact else "float32", always_2d=True)  # [samples, channels]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as error:
        raise AudioDecodeError(f"cannot decode {name}: {error}") from error
    if exact:
        return audio[:, 0], rate  # integers: always finite
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
    return _decode(data, sample_rate, keep_pcm16=False)


def decode_audio_keeping_pcm16(data: bytes | str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """:func:`decode_audio`, but int16 when that loses nothing: what training batches are made of.

    A file that is 16-bit PCM (WAV, FLAC, ...), mono and already at ``sample_rate`` (every shard
    sample) gives its own samples, ``[samples]`` int16, which are exactly ``decode_audio(data) ×
    32768``: decoding skips the float conversion and the batch built from them is half the bytes.
    Anything else (other subtypes, several channels, another rate) decodes as
    :func:`decode_audio` does, ``[samples]`` float32. Convert int16 with :func:`pcm16_to_float32`
    (numpy) or :func:`pcm16_to_float` (torch, on the device).

    Raises:
        AudioDecodeError: as :func:`decode_audio`.
    """
    return _decode(data, sample_rate, keep_pcm16=True)


def _decode(data: bytes | str | Path, sample_rate: int, keep_pcm16: bool) -> np.ndarray:
    mono, rate = _read(data, keep_pcm16_at=sample_rate if keep_pcm16 else None)
    if mono.size == 0:
        raise AudioDecodeError(f"{describe_input(data)} holds no audio samples")
    if mono.dtype == np.int16:  # kept: already mono at sample_rate
        return np.ascontiguousarray(mono)
    return resample(mono, rate, sample_rate)


def pcm16_to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 samples (any shape) → float32 ``samples / 32768`` in [-1, 1), exactly as soundfile decodes them."""
    return samples.astype(np.float32) / np.float32(PCM16_SCALE)


def pcm16_to_float(audio: torch.Tensor) -> torch.Tensor:
    """int16 PCM samples ``s`` (any shape, any device) → float32 ``s / 32768``; float audio is returned as it is.

    Exact (int16 fits float32, and 32768 is a power of two), and equal to soundfile's float32
    decoding of the same 16-bit file, so int16 batches train exactly as float32 ones. It stays
    float32 under bf16/fp16 autocast, which has no lower-precision division: the front-end gets
    the same input either way.
    """
    if audio.dtype != torch.int16:
        return audio
    return audio.float() / PCM16_SCALE


def describe_input(data: bytes | str | Path) -> str:
    """How error messages name ``data``."""
    return f"{len(data)} bytes of audio" if isinstance(data, bytes | bytearray) else str(data)


def fix_length(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """``waveform`` cut or zero-padded at the end to exactly ``n_samples``."""
    if len(waveform) >= n_samples:
        return waveform[:n_samples]
    return np.pad(waveform, (0, n_samples - len(waveform)))
