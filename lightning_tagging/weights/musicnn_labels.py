"""The tag vocabularies of the published musicnn models, in output (logit) order.

Facts copied as data from ``musicnn/configuration.py`` of the ``musicnn`` package, version
0.1.0 on PyPI (Pons & Serra, "musicnn: Pre-trained convolutional neural networks for music
audio tagging", ISMIR 2019 LBD; github.com/jordipons/musicnn, ISC licence).

- MTT: the 50 most frequent tags of MagnaTagATune (``MTT_musicnn``, ``MTT_vgg``).
- MSD: the 50 most frequent Last.fm tags of the Million Song Dataset (``MSD_musicnn``,
  ``MSD_vgg``). Case is kept as published ("Mellow", "Hip-Hop", "House").
"""

from __future__ import annotations

MTT_LABELS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip

MSD_LABELS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)  # fmt: skip
