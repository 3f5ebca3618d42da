"""Render a planned clip to audio: parts → mix → effects → level → loop to the clip's length.

One loop (four chords of four beats, 5–19 s) is rendered and then repeated to the clip's length from a
random starting point. Repetition is musical (songs loop), it keeps every tag audible in
every window of the clip, and it makes the cost depend on the loop, not on the clip: a
30 s clip costs about what a 10 s clip does.
"""

from __future__ import annotations

import numpy as np

from .arrange import PARTS, VOCAL_RANGES, Harmony, make_harmony, melody
from .drums import render_drums
from .effects import add_noise, add_reverb, band_limit, overdrive, set_level, soft_limit
from .oscillators import SAMPLE_RATE, add_circular
from .pitched import VOICES, vocal
from .plan import GENRES, ClipPlan

# Mix level of each part in dB (relative; the finished clip is normalised to its planned
# level), before a random ±2 dB. Close together, so that no part is masked by another.
MIX_DB = {"drums": 0.0, "bass": -3.0, "piano": -4.0, "guitar": -4.0, "strings": -5.0, "organ": -6.0,
          "brass": -3.0, "flute": -5.0, "bells": -4.0, "synth": -5.0, "vocal": -2.0}
LOFI_BAND_HZ = (300.0, 3200.0)


def _smooth_numbers(limit: int) -> np.ndarray:
    """Sorted integers up to ``limit`` with no prime factor above 7 (fast FFT lengths)."""
    numbers = {1}
    for prime in (2, 3, 5, 7):
        numbers |= {n * prime**k for n in numbers for k in range(1, 20) if n * prime**k <= limit}
    return np.array(sorted(numbers))


_BEAT_LENGTHS = _smooth_numbers(SAMPLE_RATE * 2)


def beat_samples(bpm: float) -> int:
    """Samples per beat at ``bpm``, rounded to the nearest 7-smooth number (< 1 % off).

    Loops are 16 beats, so their length factors into small primes too and the effects'
    FFTs stay fast (a large prime factor can make one FFT ten times slower).
    """
    ideal = SAMPLE_RATE * 60.0 / bpm
    return int(_BEAT_LENGTHS[np.argmin(np.abs(_BEAT_LENGTHS - ideal))])


def render_part(name: str, harmony: Harmony, plan: ClipPlan, rng: np.random.Generator) -> np.ndarray:
    """One pitched instrument's track over the loop ``[n_beats * beat]`` float32."""
    if name == "vocal":
        notes = melody(harmony, rng, *VOCAL_RANGES[plan.female_vocal], vowels=True)
    else:
        notes = PARTS[name](harmony, rng)
    track = np.zeros(harmony.n_beats * harmony.beat, np.float32)
    rendered: dict[tuple[int, int, str], np.ndarray] = {}  # parts repeat notes: render each once
    for note in notes:
        key = (note.midi, note.length, note.vowel)
        if key not in rendered:
            if name == "vocal":
                rendered[key] = vocal(note.midi, note.length, note.vowel, plan.female_vocal)
            else:
                rendered[key] = VOICES[name](note.midi, note.length)
        wave = rendered[key]
        add_circular(track, note.start, wave if note.level == 1.0 else wave * np.float32(note.level))
    return track


def render_loop(plan: ClipPlan, rng: np.random.Generator) -> np.ndarray:
    """The finished loop ``[L]`` float32 (mixed, effected, at the planned level)."""
    beat = beat_samples(plan.bpm)
    harmony = make_harmony(plan.mode, beat, rng)
    n = harmony.n_beats * beat
    pitched = np.zeros(n, np.float32)
    drums = np.zeros(n, np.float32)
    for name in plan.instruments:
        if name == "drums":
            track = render_drums(GENRES[plan.genre].groove, beat, harmony.n_beats, rng)
        else:
            track = render_part(name, harmony, plan, rng)
        track = set_level(track, MIX_DB[name] + rng.uniform(-2.0, 2.0))
        if name == "drums":
            drums += track
        else:
            pitched += track
    if "distorted" in plan.production:
        pitched = overdrive(pitched, rng.uniform(4.0, 8.0))
    mix = pitched + drums
    if {"reverb", "noisy", "lofi"} & set(plan.production):
        spectrum = np.fft.rfft(mix)
        if "reverb" in plan.production:
            spectrum = add_reverb(spectrum, n, rng.uniform(1.5, 3.0), rng.uniform(-1.0, 2.0), rng)
        if "noisy" in plan.production:
            spectrum = add_noise(spectrum, n, rng.uniform(3.0, 12.0), bool(rng.random() < 0.5), rng)
        if "lofi" in plan.production:
            spectrum = band_limit(spectrum, n, *LOFI_BAND_HZ)
        mix = np.fft.irfft(spectrum, n).astype(np.float32)
    return soft_limit(set_level(mix, plan.level_dbfs))


def render_clip(plan: ClipPlan) -> np.ndarray:
    """The clip's waveform ``[plan.n_samples]`` float32 at 16 kHz, in [-1, 1].

    A pure function of the plan (which is a pure function of ``(seed, index)``): the same
    plan gives the same samples, bit for bit, in any process.
    """
    rng = np.random.default_rng([plan.seed, plan.index, 1])
    loop = render_loop(plan, rng)
    start = int(rng.integers(len(loop)))  # clips start anywhere in the loop, not on the downbeat
    return np.resize(np.roll(loop, -start), plan.n_samples)
