"""Production effects and levels, applied to one loop (a periodic signal ``[L]`` float32).

The loop is played over and over, so filters are circular: reverb, noise and band limits
act on the loop's spectrum (one ``rfft`` in, one ``irfft`` out, one more for the reverb's
impulse response). A reverb tail that runs past the loop's end decays over its
beginning, exactly as it would when the loop repeats.
"""

from __future__ import annotations

import numpy as np

from .oscillators import SAMPLE_RATE


def rms(x: np.ndarray) -> float:
    """Root-mean-square level of ``x`` (linear, full scale = 1)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS level of ``dbfs`` dB relative to full scale."""
    return (x * np.float32(db_to_gain(dbfs) / rms(x))).astype(np.float32)


def overdrive(x: np.ndarray, drive: float) -> np.ndarray:
    """Guitar-amp style saturation: ``tanh`` of the signal pushed ``drive`` times past its RMS, level kept."""
    level = rms(x)
    return (np.tanh(x * np.float32(drive / (3.0 * level))) * np.float32(level)).astype(np.float32)


def spectral_power(spectrum: np.ndarray, n: int) -> float:
    """Mean square of the length-``n`` real signal whose ``rfft`` is ``spectrum`` (Parseval)."""
    power = np.abs(spectrum) ** 2
    total = 2.0 * power.sum() - power[0] - (power[-1] if n % 2 == 0 else 0.0)
    return float(total) / n**2 + 1e-20


def add_reverb(spectrum: np.ndarray, n: int, rt60_s: float, wet_db: float, rng: np.random.Generator) -> np.ndarray:
    """A hall on the loop's spectrum: dry plus the convolution with decaying noise (``rt60_s`` to −60 dB).

    The wet part is set to ``wet_db`` relative to the dry part and is darker (high
    frequencies decay faster in a real room), so the smear is audible, not just a hiss.
    """
    ir_len = min(n, int(rt60_s * SAMPLE_RATE))
    t = np.arange(ir_len, dtype=np.float32) / SAMPLE_RATE
    impulse = np.zeros(n, np.float32)
    impulse[:ir_len] = rng.standard_normal(ir_len).astype(np.float32) * np.exp(np.float32(-6.9 / rt60_s) * t)
    impulse[: int(0.02 * SAMPLE_RATE)] = 0.0  # pre-delay: the first reflections arrive after 20 ms
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    wet = spectrum * np.fft.rfft(impulse) / (1.0 + (freqs / 3000.0) ** 2)
    gain = db_to_gain(wet_db) * np.sqrt(spectral_power(spectrum, n) / spectral_power(wet, n))
    return spectrum + gain * wet


def add_noise(spectrum: np.ndarray, n: int, snr_db: float, pink: bool, rng: np.random.Generator) -> np.ndarray:
    """The loop's spectrum plus white or pink (1/f power) noise ``snr_db`` dB below the signal.

    The noise is drawn directly as a spectrum (independent Gaussian bins: white noise), so
    it costs no FFT.
    """
    noise = rng.standard_normal((2, len(spectrum)))
    noise_spectrum = noise[0] + 1j * noise[1]
    noise_spectrum[0] = 0.0  # no DC offset
    if pink:
        noise_spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0))
    ratio = spectral_power(spectrum, n) / spectral_power(noise_spectrum, n) * 10.0 ** (-snr_db / 10.0)
    return spectrum + np.sqrt(ratio) * noise_spectrum


def band_limit(spectrum: np.ndarray, n: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Telephone / AM-radio band: everything outside ``[low_hz, high_hz]`` removed (steep)."""
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    return spectrum / (1.0 + (low_hz / np.maximum(freqs, 1.0)) ** 8) / (1.0 + (freqs / high_hz) ** 12)


def soft_limit(x: np.ndarray, threshold: float = 0.6, ceiling: float = 0.98) -> np.ndarray:
    """Leave samples below ``threshold`` alone; bend larger ones smoothly towards ``ceiling``.

    Keeps loud clips inside [-1, 1] (no wrap-around when quantised to 16 bits) while only
    touching the peaks.
    """
    magnitude = np.abs(x)
    over = magnitude > threshold
    if not over.any():
        return x
    knee = ceiling - threshold
    bent = threshold + knee * np.tanh((magnitude[over] - threshold) / knee)
    out = x.copy()
    out[over] = np.sign(x[over]) * bent
    return out
