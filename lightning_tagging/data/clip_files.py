"""Loading one audio file of a dataset for the shard builder, with a reason for every refusal.

Sources that read files (mtt, msd, jamendo, csv) give each item the loader
``functools.partial(load_clip_file, path, options)``; the builder runs it in a worker
process. The file is decoded by libsndfile (MP3, FLAC, WAV, OGG/Vorbis, ...), downmixed,
optionally cut to an excerpt *before* resampling (cheaper for full-length tracks), and
resampled to 16 kHz with soxr HQ (``data/audio.py``).

A file that cannot become a clip raises :class:`SkipItem` with one of these kinds, which
stats.json counts (``skipped_by_kind``) and lists (``skipped``) with the file's path:

=========== ===================================================================
missing     no file at the path
empty       a zero-byte file, or a file that decodes to no samples
unreadable  libsndfile cannot decode it (corrupt, truncated header, not audio)
too_short   shorter than ``min_seconds`` (after decoding, before any excerpt)
silent      every sample below −90 dBFS (``SILENCE_PEAK``: one 16-bit step)
=========== ===================================================================
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, read_mono, resample
from .errors import AudioDecodeError, BuildError, SkipItem

SILENCE_PEAK = 1.0 / 32768.0  # one 16-bit step, about −90.3 dBFS: such a clip stores as all zeros


@dataclass(frozen=True)
class ClipOptions:
    """How a file becomes a clip.

    Attributes:
        min_seconds: shortest accepted file, in seconds (shorter: skipped as "too_short").
        excerpt_seconds: keep only this many seconds (None: the whole file).
        excerpt_start: where the excerpt starts: "start", "middle" (centred), or an offset in
            seconds as a string ("30"); a file shorter than the excerpt is kept whole.
    """

    min_seconds: float = 1.0
    excerpt_seconds: float | None = None
    excerpt_start: str = "middle"

    def __post_init__(self) -> None:
        if self.min_seconds < 0:
            raise BuildError("--min-seconds must be ≥ 0")
        if self.excerpt_seconds is not None and self.excerpt_seconds <= 0:
            raise BuildError("--excerpt-seconds must be positive")
        if self.excerpt_start not in ("start", "middle"):
            try:
                if float(self.excerpt_start) < 0:
                    raise ValueError
            except ValueError:
                raise BuildError("--excerpt-start must be 'start', 'middle' or a number of seconds ≥ 0") from None

    def arguments(self) -> dict[str, Any]:
        """JSON-able, for the build's recorded arguments."""
        return asdict(self)


def add_clip_arguments(parser: argparse.ArgumentParser, min_seconds: float = 1.0) -> None:
    """The options every file-based source shares."""
    parser.add_argument(
        "--min-seconds", type=float, default=min_seconds, help=f"skip files shorter than this (default: {min_seconds})"
    )
    parser.add_argument(
        "--excerpt-seconds",
        type=float,
        default=None,
        help="store only an excerpt of this many seconds (default: the whole file)",
    )
    parser.add_argument(
        "--excerpt-start",
        default="middle",
        help="where the excerpt starts: start, middle (default) or an offset in seconds",
    )


def clip_options(args: argparse.Namespace) -> ClipOptions:
    """:class:`ClipOptions` from the parsed :func:`add_clip_arguments` options."""
    return ClipOptions(args.min_seconds, args.excerpt_seconds, args.excerpt_start)


def excerpt_bounds(n_samples: int, rate: int, options: ClipOptions) -> tuple[int, int]:
    """(first, last + 1) sample of the excerpt of an ``n_samples`` file at ``rate`` Hz."""
    if options.excerpt_seconds is None:
        return 0, n_samples
    length = min(n_samples, round(options.excerpt_seconds * rate))
    if options.excerpt_start == "start":
        start = 0
    elif options.excerpt_start == "middle":
        start = (n_samples - length) // 2
    else:
        start = min(round(float(options.excerpt_start) * rate), n_samples - length)
    return start, start + length


def load_clip_file(path: str, options: ClipOptions | None = None) -> np.ndarray:
    """Waveform ``[samples]`` float32, mono, 16 kHz of the audio file at ``path``.

    Raises:
        SkipItem: the file is missing, empty, unreadable, too short or silent (see the module
            docstring); the builder leaves it out and records why.
    """
    options = options or ClipOptions()
    if not os.path.isfile(path):
        raise SkipItem(f"missing: no file {path}", kind="missing")
    if os.path.getsize(path) == 0:
        raise SkipItem(f"empty: {path} has zero bytes", kind="empty")
    try:
        mono, rate = read_mono(path)
    except AudioDecodeError as error:
        raise SkipItem(f"unreadable: {error}", kind="unreadable") from error
    if mono.size == 0:
        raise SkipItem(f"empty: {path} decodes to no samples", kind="empty")
    seconds = mono.size / rate
    if seconds < options.min_seconds:
        raise SkipItem(
            f"too short: {path} lasts {seconds:.2f} s < --min-seconds {options.min_seconds:g}", kind="too_short"
        )
    start, stop = excerpt_bounds(mono.size, rate, options)
    mono = mono[start:stop]
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise SkipItem(f"silent: every sample of {path} is below -90 dBFS", kind="silent")
    return resample(mono, rate, SAMPLE_RATE)
