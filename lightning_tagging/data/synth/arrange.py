"""Harmony and the parts each instrument plays: notes on a beat grid, for one loop.

A clip is a loop of four chords played over and over, four beats each (a chord lasts
1.3–4.6 s: chord changes, too, follow the tempo). Mode decides the chord quality: every chord of a
"major" clip is a major triad, of a "minor" clip a minor triad, and a "dissonant" clip
stacks semitone clusters and tritones on chromatic roots. Real songs mix chord qualities;
here the mode must be audible in any 3 s window, so every chord carries it.

Every part has a fixed rhythmic role, so the onset rate follows the tempo: piano chords on
each beat, guitar arpeggios in eighths, synth arpeggios in sixteenths, bass on each beat,
brass swells on each beat, melodies (flute, vocal) of one- and two-beat notes, bells on each beat,
sustained chords (strings, organ) for the length of each chord.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TONICS = (0, 7)  # C and G (pitch classes)
TRIADS = {"major": (0, 4, 7), "minor": (0, 3, 7)}
CLUSTERS = ((0, 1, 6), (0, 1, 5), (0, 6, 11), (0, 1, 4, 6), (0, 2, 3, 6))
PROGRESSIONS = ((0, 5, 7, 0), (0, 7, 5, 0), (0, 5, 0, 7), (0, 10, 5, 0), (0, 7, 10, 5), (0, 3, 5, 0), (0, 8, 5, 7))
BEATS_PER_CHORD = 4  # at every tempo, so that the rate of chord changes also tells the tempo
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dissonant": tuple(range(12))}


@dataclass(frozen=True)
class Note:
    """One note of a part: ``start`` and ``length`` (held) in samples from the loop start."""

    start: int
    length: int
    midi: int
    level: float = 1.0
    vowel: str = "a"


@dataclass(frozen=True)
class Harmony:
    """The loop's chords: each chord's root pitch class and its intervals above the root."""

    roots: tuple[int, ...]
    intervals: tuple[tuple[int, ...], ...]
    scale: tuple[int, ...]  # pitch classes of the key's scale (all twelve when dissonant)
    beats_per_chord: int
    beat: int  # samples per beat

    @property
    def n_beats(self) -> int:
        return self.beats_per_chord * len(self.roots)

    def chord_index(self, beat: float) -> int:
        return int(beat // self.beats_per_chord) % len(self.roots)

    def pitch_classes(self, chord: int) -> tuple[int, ...]:
        return tuple((self.roots[chord] + i) % 12 for i in self.intervals[chord])


def make_harmony(mode: str, beat: int, rng: np.random.Generator) -> Harmony:
    """Four chords in C or G (for "dissonant", random roots and clusters)."""
    # Two tonics only, shared by both modes: major clips then carry E and B where minor clips
    # carry Eb and Bb, so the mode shows in absolute pitch. With all twelve keys the mode is
    # only relative (intervals), which small log-mel CNNs barely learn from 3 s in CPU-minutes
    # (test ROC-AUC of major/minor stayed at 0.54–0.59 with random keys, 0.65–0.68 with these).
    key = TONICS[int(rng.integers(12)) % len(TONICS)]
    if mode == "dissonant":
        roots = tuple(int(r) for r in (key + rng.integers(0, 12, 4)) % 12)
        intervals = tuple(CLUSTERS[int(i)] for i in rng.integers(0, len(CLUSTERS), 4))
    else:
        degrees = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
        roots = tuple((key + d) % 12 for d in degrees)
        intervals = (TRIADS[mode],) * 4
    scale = tuple(sorted((key + s) % 12 for s in SCALES[mode]))
    return Harmony(roots, intervals, scale, BEATS_PER_CHORD, beat)


def voicing(pitch_classes: tuple[int, ...], low: int) -> list[int]:
    """The pitch classes as MIDI notes in the octave starting at ``low``, ascending."""
    return sorted(low + (pc - low) % 12 for pc in pitch_classes)


def chord_voicing(h: Harmony, chord: int, low: int) -> list[int]:
    """The chord in the octave from ``low`` plus its third (second chord tone) doubled an octave higher.

    The doubled third sits where mel bands are narrower than a semitone, so major and
    minor chords differ visibly there.
    """
    third = (h.roots[chord] + h.intervals[chord][1]) % 12
    return [*voicing(h.pitch_classes(chord), low), voicing((third,), low + 12)[0]]


def _at(h: Harmony, beat: float) -> int:
    return round(beat * h.beat)


def piano_part(h: Harmony, rng: np.random.Generator) -> list[Note]:
    notes = []
    for b in range(h.n_beats):
        chord = h.chord_index(b)
        downbeat = b % h.beats_per_chord == 0
        for midi in chord_voicing(h, chord, 60):
            notes.append(Note(_at(h, b), _at(h, 0.9), midi, 1.0 if downbeat else 0.7))
        if downbeat:  # left hand: the root an octave below
            notes.append(Note(_at(h, b), _at(h, 1.9), voicing((h.roots[chord],), 45)[0], 0.8))
    return notes


def guitar_part(h: Harmony, rng: np.random.Generator) -> list[Note]:
    pattern = (0, 2, 4, 1, 3, 5, 4, 2)
    notes = []
    for eighth in range(2 * h.n_beats):
        chord = h.pitch_classes(h.chord_index(eighth / 2))
        tones = (voicing(chord, 52) + voicing(chord, 64))[:6]
        notes.append(Note(_at(h, eighth / 2), _at(h, 1.0), tones[pattern[eighth % 8] % len(tones)]))
    return notes


def synth_part(h: Harmony, rng: np.random.Generator) -> list[Note]:
    notes = []
    for sixteenth in range(4 * h.n_beats):
        chord = h.pitch_classes(h.chord_index(sixteenth / 4))
        tones = voicing(chord, 60) + voicing(chord, 72)
        up_down = tones + tones[-2:0:-1]
        notes.append(Note(_at(h, sixteenth / 4), _at(h, 0.2), up_down[sixteenth % len(up_down)]))
    return notes


def _held_chords(low: int, with_root_below: bool) -> Callable[[Harmony, np.random.Generator], list[Note]]:
    def part(h: Harmony, rng: np.random.Generator) -> list[Note]:
        notes = []
        for chord in range(len(h.roots)):
            start, length = _at(h, chord * h.beats_per_chord), _at(h, h.beats_per_chord - 0.05)
            midis = chord_voicing(h, chord, low)
            if with_root_below:
                midis.append(voicing((h.roots[chord],), low - 12)[0])
            notes += [Note(start, length, m, 0.8) for m in midis]
        return notes

    return part


def brass_part(h: Harmony, rng: np.random.Generator) -> list[Note]:
    notes = []
    for b in range(h.n_beats):  # a swell on every beat
        notes += [Note(_at(h, b), _at(h, 0.92), m) for m in chord_voicing(h, h.chord_index(b), 58)]
    return notes


def bells_part(h: Harmony, rng: np.random.Generator) -> list[Note]:
    notes = []
    for b in range(h.n_beats):
        tones = voicing(h.pitch_classes(h.chord_index(b)), 76)
        notes.append(Note(_at(h, b), _at(h, 2.0), tones[int(rng.integers(len(tones)))]))
    return notes


def bass_part(h: Harmony, rng: np.random.Generator) -> list[Note]:
    notes = []
    for b in range(h.n_beats):
        chord = h.chord_index(b)
        root = voicing((h.roots[chord],), 28)[0]
        steps = h.intervals[chord]
        # root, root, top of the chord, the third: the third makes the mode audible down low too
        interval = (0, 0, steps[-1], steps[1])[b % 4]
        notes.append(Note(_at(h, b), _at(h, 0.85), root + interval))
    return notes


def melody(h: Harmony, rng: np.random.Generator, low: int, high: int, vowels: bool = False) -> list[Note]:
    """A stepwise line of one- and two-beat notes, mostly on chord tones, within [low, high]."""
    notes: list[Note] = []
    previous = (low + high) // 2
    b = 0
    while b < h.n_beats:
        length = 2 if rng.random() < 0.35 and b + 2 <= h.n_beats else 1
        pool = h.pitch_classes(h.chord_index(b)) if rng.random() < 0.8 else h.scale
        candidates = sorted((m for m in range(low, high + 1) if m % 12 in pool), key=lambda m: abs(m - previous))
        previous = candidates[int(rng.integers(min(3, len(candidates))))]
        vowel = "aeiou"[int(rng.integers(5))] if vowels else "a"
        notes.append(Note(_at(h, b), _at(h, length - 0.1), previous, 1.0, vowel))
        b += length
    return notes


PARTS: dict[str, Callable[[Harmony, np.random.Generator], list[Note]]] = {
    "piano": piano_part,
    "guitar": guitar_part,
    "strings": _held_chords(60, with_root_below=True),
    "organ": _held_chords(62, with_root_below=False),
    "brass": brass_part,
    "flute": lambda h, rng: melody(h, rng, 74, 88),
    "bells": bells_part,
    "synth": synth_part,
    "bass": bass_part,
}
# Sung melody ranges (MIDI): male A2–A3, female D4–D5, an octave apart so the voices never meet.
VOCAL_RANGES = {False: (45, 57), True: (62, 74)}
