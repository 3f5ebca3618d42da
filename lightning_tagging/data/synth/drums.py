"""A synthetic drum kit and the grooves it plays.

Kick: a sine sweeping down from ~140 Hz to ~50 Hz; snare: a noise burst plus a ~190 Hz
tone; clap: three quick noise bursts; hi-hat: high-passed noise, short (closed) or longer
(open). Hits are rendered once per clip and added at the groove's positions, so a kit
costs next to nothing whatever the tempo.
"""

from __future__ import annotations

import numpy as np

from .oscillators import SAMPLE_RATE, add_circular, exp_decay

# Groove: per instrument, the hit positions in beats within one 4-beat bar, and a level.
GROOVES: dict[str, dict[str, tuple[tuple[float, ...], float]]] = {
    "backbeat": {"kick": ((0, 2, 2.5), 1.0), "snare": ((1, 3), 0.8), "hat": ((0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5), 0.5)},
    "four_on_the_floor": {"kick": ((0, 1, 2, 3), 1.0), "clap": ((1, 3), 0.7),
                          "open_hat": ((0.5, 1.5, 2.5, 3.5), 0.5)},
    "brushes": {"kick": ((0, 2), 0.7), "snare": ((1, 3), 0.45), "hat": ((0, 1, 2, 3), 0.5)},
}


def _highpass(x: np.ndarray, times: int) -> np.ndarray:
    for _ in range(times):
        x = np.diff(x, prepend=np.float32(0.0))
    return x


def kick(tune: float) -> np.ndarray:
    n = int(0.35 * SAMPLE_RATE)
    freq = (50.0 * tune + 90.0 * exp_decay(n, 0.035)).astype(np.float64)
    phase = np.cumsum(freq * (2 * np.pi / SAMPLE_RATE))
    return (np.sin(phase).astype(np.float32) * exp_decay(n, 0.11)).astype(np.float32)


def snare(tune: float, noise: np.ndarray) -> np.ndarray:
    n = int(0.25 * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    body = np.sin(np.float32(2 * np.pi * 190 * tune) * t) * exp_decay(n, 0.04)
    rattle = _highpass(noise[:n], 1) * exp_decay(n, 0.06)
    return 0.5 * body + 0.7 * rattle


def clap(noise: np.ndarray) -> np.ndarray:
    n = int(0.2 * SAMPLE_RATE)
    burst = _highpass(noise[:n], 1) * exp_decay(n, 0.05)
    out = burst.copy()
    for delay in (0.011, 0.023):  # a clap is several hands, a few ms apart
        d = int(delay * SAMPLE_RATE)
        out[d:] += burst[: n - d]
    return out * np.float32(0.5)


def hat(noise: np.ndarray, open_: bool) -> np.ndarray:
    n = int((0.25 if open_ else 0.06) * SAMPLE_RATE)
    return _highpass(noise[:n], 3) * exp_decay(n, 0.08 if open_ else 0.02)


def render_drums(groove: str, beat: int, n_beats: int, rng: np.random.Generator) -> np.ndarray:
    """The drum track of one loop ``[n_beats * beat]`` float32 (``beat`` in samples, ``n_beats`` % 4 == 0)."""
    noise = rng.standard_normal(int(0.3 * SAMPLE_RATE)).astype(np.float32)
    hits = {
        "kick": kick(rng.uniform(0.85, 1.2)),
        "snare": snare(rng.uniform(0.9, 1.15), noise),
        "clap": clap(noise),
        "hat": hat(noise, open_=False),
        "open_hat": hat(noise, open_=True),
    }
    out = np.zeros(n_beats * beat, np.float32)
    for name, (positions, level) in GROOVES[groove].items():
        sample = hits[name] * np.float32(level)
        for bar in range(0, n_beats, 4):
            for position in positions:
                add_circular(out, round((bar + position) * beat), sample)
    return out
