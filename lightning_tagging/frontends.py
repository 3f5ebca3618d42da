"""Front-ends: what turns a batch of waveforms into the input of a backbone.

A front-end maps ``[B, samples]`` float waveforms (16 kHz unless ``sample_rate`` says
otherwise) to what its backbone expects and declares the length of its output's time axis
for a given input length, so that crop lengths and evaluation patches are derived, never
hard-coded twice.

- :class:`Waveform` passes the audio through (sample-level models such as SampleCNN).
- :class:`LogMel` computes a power mel spectrogram on the input's device, always in
  float32, then applies a :class:`Compression` (``log_eps``, ``log_learn``, ``log_c``,
  ``db``). The spectrogram lives in the model so that ``log_learn`` can learn its α and β
  end to end and data workers only decode audio.

A new compression is one new :class:`Compression` subclass with a ``name``; it registers
itself in :data:`COMPRESSIONS`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from lightning_tagging.errors import UserError

OutputKind = Literal["waveform", "spectrogram"]

# ---------------------------------------------------------------------------------------
# Compressions
# ---------------------------------------------------------------------------------------

COMPRESSIONS: dict[str, type[Compression]] = {}
"""Compression name → class, filled by :meth:`Compression.__init_subclass__`."""


class Compression(nn.Module):
    """Element-wise compression of a power mel spectrogram.

    Subclasses set ``name`` and implement :meth:`compress`; defining the class registers it
    in :data:`COMPRESSIONS`. :meth:`forward` always runs :meth:`compress` in float32 with
    autocast disabled: logarithms of small powers are where bf16/fp16 would lose the signal
    (or produce ``-inf``), and the spectrogram is cheap next to the backbone.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:  # an abstract intermediate class: nothing to register
            return
        if name in COMPRESSIONS:
            raise TypeError(f"compression {name!r} is defined twice ({COMPRESSIONS[name]} and {cls})")
        COMPRESSIONS[name] = cls

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """Compress ``power`` (any shape, power units, ≥ 0) to a float32 tensor of the same shape."""
        with torch.autocast(device_type=power.device.type, enabled=False):
            return self.compress(power.float())

    def compress(self, power: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The compression itself; ``power`` is float32 and autocast is off."""
        raise NotImplementedError

    def logged_values(self) -> dict[str, torch.Tensor]:
        """Scalars worth logging every training step (learned parameters), as detached 0-d tensors; none by default.

        Tensors, not floats: they stay on the model's device, so asking for them every step never
        makes the host wait for the GPU. Convert with ``float()`` only where a number is needed.
        """
        return {}


class LogEps(Compression):
    """``log10(X + ε)`` with ε the float32 machine epsilon (≈1.19e-7)."""

    name = "log_eps"
    eps: float = torch.finfo(torch.float32).eps

    def compress(self, power: torch.Tensor) -> torch.Tensor:
        return torch.log10(power + self.eps)


class LogLearn(Compression):
    """Learned log compression ``ln(α·X + β)`` with ``α = exp(a)``, ``β = softplus(b)``.

    ``a`` and ``b`` are trainable scalars initialised to 7 and 1 (α ≈ 1096.63,
    β ≈ 1.3133). The reparametrisation keeps α and β positive without constraints, so the
    argument of the logarithm stays ≥ β > 0.
    """

    name = "log_learn"

    def __init__(self, a: float = 7.0, b: float = 1.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    @property
    def alpha(self) -> torch.Tensor:
        """Multiplicative gain α = exp(a), a 0-d tensor in the graph."""
        return self.a.float().exp()

    @property
    def beta(self) -> torch.Tensor:
        """Additive offset β = softplus(b), a 0-d tensor in the graph."""
        return F.softplus(self.b.float())

    def compress(self, power: torch.Tensor) -> torch.Tensor:
        return torch.log(self.alpha * power + self.beta)

    def logged_values(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # new tensors (exp, softplus), not views of the parameters
            return {"alpha": self.alpha.detach(), "beta": self.beta.detach()}


class LogC(Compression):
    """musicnn's compression ``log10(10000·X + 1)`` (Pons & Serra 2019)."""

    name = "log_c"

    def compress(self, power: torch.Tensor) -> torch.Tensor:
        return torch.log10(10000.0 * power + 1.0)


class Decibel(Compression):
    """Power in decibels, ``10·log10(max(X, 1e-10))`` (librosa's ``power_to_db`` floor, no top_db)."""

    name = "db"
    amin: float = 1e-10

    def compress(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(power.clamp(min=self.amin))


def build_compression(name: str) -> Compression:
    """Instantiate the compression registered as ``name``; ValueError naming the valid ones."""
    if name not in COMPRESSIONS:
        raise UserError(
            f"unknown compression {name!r}; valid compressions: {', '.join(sorted(COMPRESSIONS))}"
        )
    return COMPRESSIONS[name]()


# ---------------------------------------------------------------------------------------
# Front-ends
# ---------------------------------------------------------------------------------------


class Frontend(nn.Module):
    """Base class of front-ends: ``[B, samples]`` waveforms → backbone input.

    Attributes:
        output_kind: ``"waveform"`` (output ``[B, samples]``) or ``"spectrogram"``
            (output ``[B, 1, n_mels, n_frames]``); must equal the backbone's ``input_kind``.
        sample_rate: sample rate in Hz the front-end expects its input at.
    """

    output_kind: ClassVar[OutputKind]
    sample_rate: int

    def n_frames(self, n_samples: int) -> int:  # pragma: no cover - abstract
        """Length of the output's last (time) axis for an input of ``n_samples`` samples."""
        raise NotImplementedError

    def n_samples_for(self, n_frames: int) -> int:  # pragma: no cover - abstract
        """Fewest input samples whose output has exactly ``n_frames`` time steps."""
        raise NotImplementedError

    def output_shape(self, n_samples: int) -> tuple[int, ...]:  # pragma: no cover - abstract
        """Shape of one example's output (no batch axis) for ``n_samples`` input samples."""
        raise NotImplementedError

    def logged_values(self) -> dict[str, torch.Tensor]:
        """Scalars worth logging every training step (e.g. log_learn's α, β) as detached 0-d tensors on the
        model's device (no host sync); none by default."""
        return {}


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """Accept ``[B, samples]`` or ``[B, 1, samples]``; return ``[B, samples]``."""
    if x.ndim == 3 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 2:
        raise UserError(f"expected waveforms of shape [B, samples], got {tuple(x.shape)}")
    return x


class Waveform(Frontend):
    """Identity front-end for sample-level backbones: ``[B, samples]`` → ``[B, samples]``."""

    output_kind = "waveform"

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate

    def n_frames(self, n_samples: int) -> int:
        return n_samples

    def n_samples_for(self, n_frames: int) -> int:
        return n_frames

    def output_shape(self, n_samples: int) -> tuple[int, ...]:
        return (n_samples,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``[B, samples]`` waveforms unchanged (a ``[B, 1, samples]`` input is squeezed)."""
        return _as_batch(x)


class LogMel(Frontend):
    """Compressed power mel spectrogram: ``[B, samples]`` → ``[B, 1, n_mels, n_frames]``.

    The power spectrogram equals ``librosa.feature.melspectrogram`` with the same
    arguments: periodic Hann window of ``n_fft`` samples, frames centred on multiples of
    ``hop_length`` (the signal is zero-padded by ``n_fft // 2`` on both sides, so
    ``n_frames = 1 + n_samples // hop_length``), ``|STFT|²``, Slaney-scale mel filters with
    Slaney (area) normalisation. It is computed in float32 with autocast disabled whatever
    the surrounding precision, then compressed (see :data:`COMPRESSIONS`).

    Args:
        compression: name of a registered :class:`Compression`.
        sample_rate: input sample rate in Hz.
        n_fft: FFT size and window length in samples.
        hop_length: hop between frames in samples.
        n_mels: number of mel bands.
        f_min: lowest mel filter edge in Hz.
        f_max: highest mel filter edge in Hz; ``None`` means ``sample_rate / 2``.
    """

    output_kind = "spectrogram"

    def __init__(
        self,
        compression: str = "log_eps",
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 96,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = sample_rate / 2 if f_max is None else f_max
        self.compression_name = compression
        self.compression = build_compression(compression)
        # Buffers, not parameters: they follow .to(device) and are saved in checkpoints, so a
        # checkpoint records exactly the analysis it was trained with.
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=True)
        mel_fb = AF.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=f_min,
            f_max=self.f_max,
            n_mels=n_mels,
            sample_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # [n_freqs, n_mels]
        self.register_buffer("mel_fb", mel_fb.T.contiguous(), persistent=True)  # [n_mels, n_freqs]

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def n_samples_for(self, n_frames: int) -> int:
        if n_frames < 1:
            raise UserError(f"n_frames must be ≥ 1, got {n_frames}")
        return (n_frames - 1) * self.hop_length

    def output_shape(self, n_samples: int) -> tuple[int, ...]:
        return (1, self.n_mels, self.n_frames(n_samples))

    def mel_power(self, x: torch.Tensor) -> torch.Tensor:
        """Uncompressed power mel spectrogram ``[B, 1, n_mels, n_frames]`` (float32, power units).

        Args:
            x: waveforms ``[B, samples]`` (or ``[B, 1, samples]``), any float dtype.
        """
        x = _as_batch(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            spec = torch.stft(
                x,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                window=self.window.float(),
                center=True,
                pad_mode="constant",  # librosa's default since 0.10
                return_complex=True,
            )  # [B, n_freqs, n_frames] complex
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(self.mel_fb.float(), power)  # [B, n_mels, n_frames]
        return mel.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compressed mel spectrogram ``[B, 1, n_mels, n_frames]`` in float32 of ``x`` ``[B, samples]``."""
        return self.compression(self.mel_power(x))

    def logged_values(self) -> dict[str, torch.Tensor]:
        return self.compression.logged_values()
