"""Pitched instrument voices: one function per instrument, one note per call.

Every voice has the same signature, ``voice(midi, n_held) -> float32 [n_held + tail]``:
``midi`` is the note number, ``n_held`` how many samples the note is held; the voice may
ring on for a short tail (its release). Output peaks near 1 before mixing.

Each voice has a timbre that stays recognisable in a 3 s log-mel patch:

- piano: hammer-bright attack, decay that is faster for high notes, harmonic partials;
- guitar: plucked (bright transient, fast decay, comb-shaped spectrum of the pluck point);
- strings: two detuned sawtooth voices, slow bow attack, 5.5 Hz vibrato;
- organ: drawbar spectrum (harmonics 1, 2, 3, 4, 6, 8), switched on and off, steady pitch,
  a 6.7 Hz Leslie tremolo (amplitude, not pitch: stripes across every band);
- brass: chords swelling from −24 dB on every beat (a ramp), upper harmonics fanning in as
  they get louder, with a pitch scoop at the attack;
- flute: nearly sinusoidal, airy breath noise, gentle delayed vibrato, high register;
- bells: inharmonic partials (1, 2, 2.4, 3, 4, 5.33 × f0) that ring for seconds, and a
  metallic strike (6.8, 8.9 × f0, gone in 50 ms);
- synth: two detuned bright sawtooths, hard gate (no attack, no decay);
- bass: dark plucked tone an octave or two below the rest;
- vocal: a glottal source shaped by vowel formants (fixed in frequency, unlike the
  harmonics), with a singer's delayed vibrato.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from .oscillators import (
    SAMPLE_RATE,
    cycle_indices,
    exp_decay,
    gate,
    harmonic_table,
    midi_to_hz,
    n_partials,
    phase_indices,
    sawtooth_table,
    vibrato_cycles,
)

Voice = Callable[[int, int], np.ndarray]


def _seconds(s: float) -> int:
    return int(s * SAMPLE_RATE)


@lru_cache(maxsize=256)
def _struck_tables(midi: int, strike_point: float, dull_rolloff: float) -> tuple[np.ndarray, np.ndarray]:
    """(bright, dull) tables of a struck or plucked string: a comb from the strike point vs a dark tone."""
    k = np.arange(1, n_partials(midi_to_hz(midi)) + 1)
    bright = k**-0.9 * (0.15 + np.abs(np.sin(np.pi * k * strike_point)))
    return harmonic_table(bright), harmonic_table(k**-dull_rolloff)


def piano(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.08)
    bright, dull = _struck_tables(midi, 1 / 8, 2.2)
    idx = phase_indices(midi_to_hz(midi), n)
    body_decay = float(np.clip(1.6 - (midi - 48) * 0.03, 0.35, 1.8))  # low strings ring longer
    release = gate(n, 0.002, 0.08)
    return (bright[idx] * (0.8 * exp_decay(n, 0.09)) + dull[idx] * exp_decay(n, body_decay)) * release


def guitar(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.05)
    bright, dull = _struck_tables(midi, 0.22, 3.0)
    idx = phase_indices(midi_to_hz(midi), n)
    return (bright[idx] * exp_decay(n, 0.05) + dull[idx] * (0.8 * exp_decay(n, 0.45))) * gate(n, 0.001, 0.05)


def strings(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.25)
    f0 = midi_to_hz(midi)
    out = np.zeros(n, np.float32)
    table = sawtooth_table(round(f0, 2), 1.0, 2500.0)
    for detune, phase in ((-0.07, 0.0), (0.07, 2.1)):  # two desks, ±7 cents, vibrato out of step
        out += table[cycle_indices(vibrato_cycles(n, 5.5, 0.15, 0.0, phase), f0 * 2 ** (detune / 12))]
    return out * gate(n, 0.22, 0.25) * 0.6


@lru_cache(maxsize=128)
def _organ_table(midi: int) -> np.ndarray:
    amps = np.zeros(n_partials(midi_to_hz(midi)))
    for harmonic, level in ((1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5), (6, 0.35), (8, 0.35)):
        if harmonic <= len(amps):
            amps[harmonic - 1] = level
    return harmonic_table(amps)


def organ(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.02)
    t = np.arange(n, dtype=np.float32) / np.float32(SAMPLE_RATE)
    leslie = np.float32(1.0) - np.float32(0.3) * (np.float32(1.0) + np.sin(np.float32(2 * np.pi * 6.7) * t))
    return _organ_table(midi)[phase_indices(midi_to_hz(midi), n)] * leslie * gate(n, 0.004, 0.02) * 0.5


def brass(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.06)
    f0 = midi_to_hz(midi)
    t = np.arange(n, dtype=np.float32)
    scoop = f0 * np.exp(np.float32(-0.06) * np.exp(t * np.float32(-1 / (0.04 * SAMPLE_RATE))))  # starts flat
    idx = phase_indices(scoop, n)
    # A crescendo from −24 dB over the whole note (a ramp in a log spectrogram), and brass
    # gets brighter as it gets louder: the upper harmonics fan in as the swell grows.
    swell = np.exp(np.minimum(np.float32(0.0), t / np.float32(max(1, n_held)) - np.float32(1.0)) * np.float32(2.76))
    dark, bright = sawtooth_table(round(f0, 2), 1.8, 600.0), sawtooth_table(round(f0, 2), 0.7, 5000.0)
    return (dark[idx] * swell + bright[idx] * swell**2) * gate(n, 0.01, 0.05) * 0.8


@lru_cache(maxsize=1)
def _breath_noise() -> np.ndarray:
    """Ten seconds of fixed, high-passed noise (the same in every process: determinism)."""
    noise = np.random.default_rng(20180923).standard_normal(10 * SAMPLE_RATE).astype(np.float32)
    return np.diff(noise, prepend=np.float32(0.0)) * np.float32(0.5)


def flute(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.05)
    f0 = midi_to_hz(midi)
    table = harmonic_table(np.array([1.0, 0.22, 0.08, 0.03])[: n_partials(f0)])
    tone = table[cycle_indices(vibrato_cycles(n, 4.8, 0.18, 0.12), f0)]
    breath = np.resize(_breath_noise()[(midi * 997) % SAMPLE_RATE :], n) * np.float32(0.12)
    return (tone + breath) * gate(n, 0.04, 0.05)


BELL_PARTIALS = np.array([1.0, 2.0, 2.4, 3.0, 4.0, 5.33, 6.8, 8.9], np.float32)
BELL_LEVELS = np.array([1.0, 0.6, 0.5, 0.35, 0.25, 0.2, 0.3, 0.25], np.float32)
BELL_DECAYS_S = np.array([2.0, 1.4, 1.2, 0.9, 0.7, 0.5, 0.06, 0.04], np.float32)  # the top two: the strike


def bells(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(1.2)
    f0 = midi_to_hz(midi)
    t = np.arange(n, dtype=np.float32) / np.float32(SAMPLE_RATE)
    out = np.zeros(n, np.float32)
    for ratio, level, decay_s in zip(BELL_PARTIALS, BELL_LEVELS, BELL_DECAYS_S, strict=True):
        if f0 * ratio < 7600:  # higher partials die sooner; the highest make the metallic strike
            out += np.sin(np.float32(2 * np.pi * f0 * ratio) * t) * np.exp(t * np.float32(-1.0 / decay_s)) * level
    return out * gate(n, 0.001, 0.3) * 0.5


def synth(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.015)
    f0 = midi_to_hz(midi)
    table = sawtooth_table(round(f0, 2), 0.8, 5000.0)
    out = table[phase_indices(f0 * 2 ** (-0.1 / 12), n)] + table[phase_indices(f0 * 2 ** (0.1 / 12), n, 0.3)]
    return out * gate(n, 0.002, 0.015) * 0.5


@lru_cache(maxsize=64)
def _bass_table(midi: int) -> np.ndarray:
    return harmonic_table(np.array([1.0, 0.6, 0.35, 0.2, 0.1, 0.05])[: n_partials(midi_to_hz(midi))])


def bass(midi: int, n_held: int) -> np.ndarray:
    n = n_held + _seconds(0.03)
    idx = phase_indices(midi_to_hz(midi), n)
    return _bass_table(midi)[idx] * (0.5 + 0.5 * exp_decay(n, 0.15)) * gate(n, 0.005, 0.03)


# Formant centre frequencies (Hz) of sung vowels, adult male; a female voice scales them by 1.17.
VOWEL_FORMANTS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (300.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (320.0, 870.0, 2240.0),
}
VOWELS = tuple(VOWEL_FORMANTS)
_FORMANT_LEVELS = (1.0, 0.5, 0.3)
_FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)


@lru_cache(maxsize=256)
def _vowel_table(midi: int, vowel: str, formant_scale: float) -> np.ndarray:
    f0 = midi_to_hz(midi)
    freqs = np.arange(1, n_partials(f0) + 1) * f0
    envelope = np.full_like(freqs, 0.02)
    for centre, level, width in zip(VOWEL_FORMANTS[vowel], _FORMANT_LEVELS, _FORMANT_BANDWIDTHS, strict=True):
        envelope += level / (1.0 + ((freqs - centre * formant_scale) / (width * formant_scale)) ** 2)
    return harmonic_table(envelope * (freqs / f0) ** -0.5)


def vocal(midi: int, n_held: int, vowel: str = "a", female: bool = False) -> np.ndarray:
    n = n_held + _seconds(0.06)
    table = _vowel_table(midi, vowel, 1.17 if female else 1.0)
    return table[cycle_indices(vibrato_cycles(n, 5.6, 0.4, 0.15), midi_to_hz(midi))] * gate(n, 0.04, 0.06)


VOICES: dict[str, Voice] = {
    "piano": piano,
    "guitar": guitar,
    "strings": strings,
    "organ": organ,
    "brass": brass,
    "flute": flute,
    "bells": bells,
    "synth": synth,
    "bass": bass,
}
