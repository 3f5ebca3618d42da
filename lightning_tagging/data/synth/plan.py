"""What a synthetic clip contains (its tags), decided before any audio is made.

A clip's plan is a pure function of ``(seed, index)``: a latent genre is drawn first and
sets the probabilities of everything else, which makes tags co-occur the way they do in
real collections (drums with bass, reverb with slow ambient pads, distortion with rock)
and makes their frequencies skewed (head tags on a third to a half of the clips, tail tags
on 7–10 %). The genre itself is not a tag. Planning is cheap (no audio), so a builder
can list a million clips' tags in seconds while workers render the audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INSTRUMENTS = ("piano", "guitar", "strings", "organ", "brass", "flute", "bells", "synth", "bass", "drums", "vocal")
PRODUCTION = ("noisy", "reverb", "lofi", "distorted")
TAGS = (
    *INSTRUMENTS,
    "male vocal",
    "female vocal",
    "fast",
    "slow",
    "major",
    "minor",
    "dissonant",
    "loud",
    "quiet",
    *PRODUCTION,
)

# Tempo classes in BPM, with gaps between them so that "fast" and "slow" are never a coin flip.
TEMPO_RANGES = {"slow": (52.0, 72.0), "medium": (96.0, 116.0), "fast": (148.0, 180.0)}
# RMS level of the finished clip in dBFS: "quiet" is ~20 dB below "normal", "loud" ~10 dB above.
LOUDNESS_DBFS = {"quiet": (-44.0, -38.0), "normal": (-24.0, -19.0), "loud": (-12.0, -10.0)}

# Instruments that carry harmony or melody (so the mode is audible) and that articulate the
# beat (so the tempo is audible); a plan without one of each gets its genre's default.
HARMONIC = frozenset({"piano", "guitar", "strings", "organ", "brass", "flute", "bells", "synth", "vocal"})
RHYTHMIC = frozenset(INSTRUMENTS) - {"strings", "organ"}


@dataclass(frozen=True)
class Genre:
    """A latent style: the probability of each instrument, tempo class, mode, effect and level."""

    weight: float
    instruments: dict[str, float]
    tempo: tuple[float, float, float]  # P(slow), P(medium), P(fast)
    mode: tuple[float, float, float]  # P(major), P(minor), P(dissonant)
    loudness: tuple[float, float, float]  # P(quiet), P(normal), P(loud)
    production: dict[str, float]
    groove: str  # the drum pattern, see drums.GROOVES
    default_harmonic: str
    default_rhythmic: str
    female: float = 0.5  # P(female vocal | vocal)


GENRES: dict[str, Genre] = {
    "pop": Genre(0.25, dict(piano=0.45, guitar=0.25, strings=0.2, organ=0.04, brass=0.15, flute=0.04, bells=0.05,
                            synth=0.3, bass=0.6, drums=0.7, vocal=0.85),
                 (0.2, 0.6, 0.2), (0.7, 0.3, 0.0), (0.05, 0.7, 0.25),
                 dict(noisy=0.04, reverb=0.2, lofi=0.05, distorted=0.02), "backbeat", "piano", "piano", female=0.6),
    "rock": Genre(0.17, dict(piano=0.1, guitar=1.0, strings=0.05, organ=0.2, brass=0.05, bass=0.8, drums=0.95,
                             vocal=0.6),
                  (0.05, 0.5, 0.45), (0.5, 0.5, 0.0), (0.02, 0.5, 0.48),
                  dict(noisy=0.06, reverb=0.1, lofi=0.05, distorted=0.45), "backbeat", "guitar", "guitar",
                  female=0.35),
    "electronic": Genre(0.17, dict(piano=0.1, guitar=0.05, strings=0.12, organ=0.05, brass=0.05, flute=0.05,
                                   bells=0.12, synth=1.0, bass=0.7, drums=0.9, vocal=0.25),
                        (0.05, 0.45, 0.5), (0.35, 0.57, 0.08), (0.03, 0.52, 0.45),
                        dict(noisy=0.05, reverb=0.25, lofi=0.1, distorted=0.12), "four_on_the_floor", "synth",
                        "synth"),
    "classical": Genre(0.18, dict(piano=0.5, guitar=0.05, strings=0.8, organ=0.12, brass=0.35, flute=0.35,
                                  bells=0.05, bass=0.05, vocal=0.05),
                       (0.35, 0.45, 0.2), (0.5, 0.4, 0.1), (0.25, 0.7, 0.05),
                       dict(noisy=0.08, reverb=0.5, lofi=0.03), "brushes", "strings", "piano"),
    "ambient": Genre(0.11, dict(piano=0.3, guitar=0.1, strings=0.5, organ=0.25, flute=0.25, bells=0.35, synth=0.35,
                                bass=0.1, drums=0.05, vocal=0.15),
                     (0.85, 0.15, 0.0), (0.3, 0.4, 0.3), (0.35, 0.65, 0.0),
                     dict(noisy=0.2, reverb=0.95, lofi=0.05), "brushes", "strings", "bells", female=0.7),
    "folk": Genre(0.12, dict(piano=0.1, guitar=1.0, strings=0.2, organ=0.05, flute=0.3, bass=0.35, drums=0.25,
                             vocal=0.75),
                  (0.25, 0.6, 0.15), (0.7, 0.3, 0.0), (0.1, 0.85, 0.05),
                  dict(noisy=0.3, reverb=0.1, lofi=0.25, distorted=0.01), "brushes", "guitar", "guitar"),
}
_GENRE_NAMES = tuple(GENRES)
_GENRE_WEIGHTS = np.array([g.weight for g in GENRES.values()]) / sum(g.weight for g in GENRES.values())


@dataclass(frozen=True)
class ClipPlan:
    """Everything about one clip that its tags depend on (rendering adds the musical details).

    Attributes:
        seed, index: the corpus seed and the clip's position; the plan is a pure function of both.
        genre: the latent style (not a tag).
        bpm: tempo in beats per minute; ``tempo`` is its class (slow / medium / fast).
        mode: major, minor or dissonant.
        instruments: instrument names from :data:`INSTRUMENTS`, in that order.
        female_vocal: whether the vocal (if any) is a female voice.
        production: effects from :data:`PRODUCTION`, in that order.
        loudness: quiet, normal or loud; ``level_dbfs`` is the clip's RMS level.
        n_samples: clip length in samples at 16 kHz.
    """

    seed: int
    index: int
    genre: str
    bpm: float
    tempo: str
    mode: str
    instruments: tuple[str, ...]
    female_vocal: bool
    production: tuple[str, ...]
    loudness: str
    level_dbfs: float
    n_samples: int
    tags: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        tags = set(self.instruments) | set(self.production) | {self.mode}
        if "vocal" in self.instruments:
            tags.add("female vocal" if self.female_vocal else "male vocal")
        if self.tempo != "medium":
            tags.add(self.tempo)
        if self.loudness != "normal":
            tags.add(self.loudness)
        object.__setattr__(self, "tags", tuple(t for t in TAGS if t in tags))


def _pick(names: tuple[str, ...], probs: tuple[float, ...] | np.ndarray, u: float) -> str:
    """The name whose slice of the cumulative (normalised) distribution holds the uniform draw ``u``."""
    total = float(sum(probs))
    cumulative = 0.0
    for name, p in zip(names, probs, strict=True):
        cumulative += p / total
        if u < cumulative:
            return name
    return names[-1]


def plan_clip(seed: int, index: int, min_seconds: float = 10.0, max_seconds: float = 30.0) -> ClipPlan:
    """The plan of clip ``index`` of the corpus ``seed``; clip length uniform in [min_seconds, max_seconds]."""
    # All draws at once, each at a fixed position: a plan costs ~50 µs, and changing one
    # probability never shifts the random stream of the other decisions.
    u = np.random.default_rng([seed, index, 0]).random(24).tolist()
    genre_name = _pick(_GENRE_NAMES, _GENRE_WEIGHTS, u[0])
    genre = GENRES[genre_name]
    present = {name for name, v in zip(INSTRUMENTS, u[1:12], strict=True) if v < genre.instruments.get(name, 0.0)}
    if not present & HARMONIC:
        present.add(genre.default_harmonic)
    if not present & RHYTHMIC:
        present.add(genre.default_rhythmic)
    tempo = _pick(("slow", "medium", "fast"), genre.tempo, u[12])
    low, high = TEMPO_RANGES[tempo]
    production = tuple(p for p, v in zip(PRODUCTION, u[16:20], strict=True) if v < genre.production.get(p, 0.0))
    loudness = _pick(("quiet", "normal", "loud"), genre.loudness, u[20])
    quietest, loudest = LOUDNESS_DBFS[loudness]
    return ClipPlan(
        seed=seed,
        index=index,
        genre=genre_name,
        bpm=low + (high - low) * u[13],
        tempo=tempo,
        mode=_pick(("major", "minor", "dissonant"), genre.mode, u[14]),
        instruments=tuple(i for i in INSTRUMENTS if i in present),
        female_vocal=u[15] < genre.female,
        production=production,
        loudness=loudness,
        level_dbfs=quietest + (loudest - quietest) * u[21],
        n_samples=round((min_seconds + (max_seconds - min_seconds) * u[22]) * 16000),
    )
