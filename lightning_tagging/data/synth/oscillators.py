"""Band-limited wavetable oscillators and envelopes: the cheap building blocks of every voice.

Speed matters (a 30 s clip must render in well under 100 ms on one core), so a pitched note
is never a sum of per-sample sines: its single-cycle waveform is built once with an inverse
FFT (harmonics above the Nyquist frequency left out, so nothing aliases) and then read with
an integer phase accumulator (exact, no drift) and one table lookup per sample.

All signals are float32 at :data:`SAMPLE_RATE`; lengths are in samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
TABLE_SIZE = 2048  # samples in one cycle of a wavetable (a power of two: the index is a bit shift)
_PHASE_BITS = 32  # phase accumulator resolution: one cycle = 2**32
_INDEX_SHIFT = _PHASE_BITS - 11  # 2**11 == TABLE_SIZE
_HIGHEST_PARTIAL_HZ = 7600.0  # partials above this are dropped (Nyquist is 8000 Hz)


def midi_to_hz(midi: float) -> float:
    """Frequency in Hz of a MIDI note number (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def n_partials(f0: float) -> int:
    """How many harmonics of ``f0`` Hz fit below the highest allowed partial."""
    return max(1, min(TABLE_SIZE // 2 - 1, int(_HIGHEST_PARTIAL_HZ / f0)))


def harmonic_table(amplitudes: np.ndarray) -> np.ndarray:
    """Single-cycle waveform ``[TABLE_SIZE]`` float32 whose harmonic ``k+1`` has amplitude ``amplitudes[k]``.

    Sine phases: the table starts at zero, so a note starting at phase 0 has no click.
    """
    k = min(len(amplitudes), TABLE_SIZE // 2 - 1)
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, np.complex128)
    spectrum[1 : k + 1] = -1j * np.asarray(amplitudes[:k]) * (TABLE_SIZE / 2)
    return np.fft.irfft(spectrum, TABLE_SIZE).astype(np.float32)


@lru_cache(maxsize=512)
def sawtooth_table(f0: float, rolloff: float = 1.0, cutoff_hz: float = 8000.0) -> np.ndarray:
    """Sawtooth-like table for ``f0``: harmonic k at ``k**-rolloff``, with a soft lowpass at ``cutoff_hz``."""
    k = np.arange(1, n_partials(f0) + 1)
    amps = k**-rolloff / (1.0 + (k * f0 / cutoff_hz) ** 4)
    return harmonic_table(amps)


def phase_indices(freq: float | np.ndarray, n: int, phase: float = 0.0) -> np.ndarray:
    """Table indices ``[n]`` (int64) of an oscillator at ``freq`` Hz (a scalar or ``[n]`` array)."""
    offset = int(phase * 2**_PHASE_BITS)
    if np.ndim(freq) == 0:
        increment = round(float(freq) * 2**_PHASE_BITS / SAMPLE_RATE)
        accumulator = np.arange(n, dtype=np.int64) * increment
    else:
        increments = (np.asarray(freq, np.float64) * (2**_PHASE_BITS / SAMPLE_RATE)).astype(np.int64)
        accumulator = np.cumsum(increments)
    accumulator += offset
    return (accumulator >> _INDEX_SHIFT) & (TABLE_SIZE - 1)


@lru_cache(maxsize=64)
def vibrato_cycles(n: int, rate_hz: float, depth_semitones: float, delay_s: float = 0.0,
                   phase: float = 0.0) -> np.ndarray:
    """Cumulative cycles ``[n]`` (float64) of a 1 Hz tone with vibrato; multiply by f0 for any note.

    The vibrato (a sinusoidal frequency ratio, fading in after ``delay_s``) does not depend
    on the note, so notes of the same length share one curve (cached).
    """
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    depth = np.float32(depth_semitones / 12.0 * np.log(2.0))  # semitones → natural-log frequency ratio
    if delay_s > 0:
        depth = depth * np.clip((t - delay_s) / 0.2, 0.0, 1.0)  # singers start a note straight
    ratio = np.exp(depth * np.sin(np.float32(2 * np.pi * rate_hz) * t + np.float32(phase)))
    cycles = np.cumsum(ratio, dtype=np.float64) / SAMPLE_RATE
    cycles.flags.writeable = False  # shared through the cache
    return cycles


def cycle_indices(cycles: np.ndarray, f0: float) -> np.ndarray:
    """Table indices ``[n]`` of a note at ``f0`` Hz following the 1 Hz curve ``cycles`` (see :func:`vibrato_cycles`)."""
    phase = cycles * f0
    return ((phase - np.floor(phase)) * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)


def exp_decay(n: int, time_constant_s: float) -> np.ndarray:
    """``exp(-t / time_constant_s)`` over ``[n]`` samples, float32."""
    return np.exp(np.arange(n, dtype=np.float32) * np.float32(-1.0 / (time_constant_s * SAMPLE_RATE)))


def gate(n: int, attack_s: float, release_s: float) -> np.ndarray:
    """Trapezoid envelope ``[n]``: linear attack from 0, hold at 1, linear release to 0 at the end."""
    t = np.arange(n, dtype=np.float32)
    attack = max(1.0, attack_s * SAMPLE_RATE)
    release = max(1.0, release_s * SAMPLE_RATE)
    return np.minimum(np.float32(1.0), np.minimum(t / np.float32(attack), (n - t) / np.float32(release)))


def add_circular(buffer: np.ndarray, start: int, signal: np.ndarray) -> None:
    """Add ``signal`` into the loop ``buffer`` at ``start``, wrapping past the end to the beginning.

    The clip is a loop played over and over, so a note that rings past the loop's end
    must sound at its beginning: that makes the repetition seamless.
    """
    length = len(buffer)
    start %= length
    while len(signal):
        chunk = min(len(signal), length - start)
        buffer[start : start + chunk] += signal[:chunk]
        signal = signal[chunk:]
        start = 0
