"""Training-set sizes for the data-size ablation: nested subsets fixed by a subset seed.

    data:
      train_size: 0.1     # a fraction of the training clips (0 < f ≤ 1.0), or a count (10000)
      subset_seed: 0      # which clips; independent of the training seed

Every training clip gets a rank: the BLAKE2b hash of (subset seed, key). A subset of size
``n`` is the ``n`` clips of lowest rank. So subsets are nested (the 1 % subset is inside the
10 % subset, which is inside the full set), the same in every run, on every rank and in
every worker (they depend on nothing but the keys and the seed), and unchanged by shard
size, worker count or the order of shards. Training with another ``seed`` changes the
order clips are seen in, not which clips there are.

A fraction ``f`` selects ``max(1, round(f × N))`` of the ``N`` training clips. Floats up to
1.0 are fractions, integers (and whole floats above 1, such as ``1e4``) are counts: ``1.0``
is every clip, ``1`` is one clip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import DataError


def subset_size(train_size: float | int | None, n_available: int) -> int:
    """How many of ``n_available`` clips ``train_size`` means (None: all of them)."""
    if train_size is None:
        return n_available
    if isinstance(train_size, bool) or not isinstance(train_size, int | float):
        raise DataError(f"data.train_size must be a fraction (0 < f ≤ 1.0) or a count of clips, got {train_size!r}")
    if isinstance(train_size, float) and train_size > 1.0 and train_size.is_integer():
        train_size = int(train_size)  # 1e4 (YAML and the command line make it a float): a count
    if isinstance(train_size, float):
        if not 0.0 < train_size <= 1.0:
            raise DataError(
                f"data.train_size {train_size} is a fraction, so it must be in (0, 1]; give a count of "
                "clips as an integer"
            )
        return max(1, round(train_size * n_available))
    if not 1 <= train_size <= n_available:
        raise DataError(
            f"data.train_size {train_size} asks for more clips than the {n_available} training clips there are"
            if train_size > n_available
            else "data.train_size must be at least 1"
        )
    return train_size


def subset_rank(key: str, subset_seed: int) -> bytes:
    """The sort key of a clip in the subset order of ``subset_seed``."""
    return hashlib.blake2b(f"{subset_seed}\0{key}".encode(), digest_size=16).digest()


def select_subset(keys: Sequence[str], train_size: float | int | None, subset_seed: int = 0) -> frozenset[str]:
    """The keys of the subset of ``train_size`` (see the module docstring)."""
    n = subset_size(train_size, len(keys))
    if n == len(keys):
        return frozenset(keys)
    return frozenset(sorted(keys, key=lambda k: (subset_rank(k, subset_seed), k))[:n])
