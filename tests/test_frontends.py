"""Front-ends: librosa parity of the mel spectrogram, compressions, frame arithmetic."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from lightning_tagging.frontends import COMPRESSIONS, Compression, LogMel, Waveform, build_compression

SR = 16000
REAL_AUDIO = Path(__file__).parents[2] / "shared/data/real-audio"
REAL_FILES = sorted(REAL_AUDIO.glob("*.mp3")) if REAL_AUDIO.is_dir() else []


def load_mono_16k(path: Path) -> np.ndarray:
    """Decode with soundfile, average channels, resample to 16 kHz with soxr: float32 ``[samples]``."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SR:
        mono = soxr.resample(mono, sr, SR)
    return np.ascontiguousarray(mono, dtype=np.float32)


def music_like(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """A few seconds of synthetic 'music': decaying harmonic notes, a kick and hi-hat noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    note_len = 0.5
    for i, midi in enumerate(rng.choice([57, 60, 64, 67, 69, 72], size=int(seconds / note_len))):
        start = i * note_len
        local = t - start
        on = (local >= 0) & (local < 2 * note_len)  # notes ring into the next one
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        env = np.exp(-local[on] * 4.0)
        for k in range(1, 8):  # harmonics with 1/k amplitudes, kept below Nyquist
            if k * f0 < SR / 2:
                y[on] += env * np.sin(2 * np.pi * k * f0 * local[on]) / k
    for beat in np.arange(0, seconds, 0.25):
        local = t - beat
        on = (local >= 0) & (local < 0.15)
        y[on] += 0.3 * rng.standard_normal(on.sum()) * np.exp(-local[on] * 40)  # hi-hat
        if int(beat * 4) % 4 == 0:  # kick on every beat: a falling sine sweep
            y[on] += 1.5 * np.sin(2 * np.pi * (60 + 100 * np.exp(-local[on] * 30)) * local[on])
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def generated_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A music-like signal written to MP3 at 16 kHz (decoded in the test), so parity is
    checked even without the shared real-audio folder. It is loud from the first sample, so
    the centred edge frames check the zero padding too (reflect padding fails here by
    ~0.5 × max; on the real clips, which fade in, it would pass)."""
    path = tmp_path_factory.mktemp("audio") / "music_like.mp3"
    sf.write(path, music_like(), SR, format="MP3", subtype="MPEG_LAYER_III")
    return path


def assert_librosa_parity(y: np.ndarray) -> float:
    """Our power mel vs librosa's on ``y``; returns the max error relative to the max power."""
    expected = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=256, n_mels=96)
    frontend = LogMel()
    ours = frontend.mel_power(torch.from_numpy(y)[None])
    assert ours.dtype == torch.float32
    assert ours.shape == (1, 1, 96, expected.shape[1])
    assert expected.shape[1] == frontend.n_frames(len(y))
    rel = float(np.abs(ours[0, 0].numpy() - expected).max() / expected.max())
    assert rel < 1e-4, f"mel power differs from librosa by {rel:.2e} × max"
    return rel


def test_librosa_parity_generated_mp3(generated_mp3: Path) -> None:
    y = load_mono_16k(generated_mp3)
    assert len(y) > 3 * SR and np.abs(y).max() > 0.1  # the MP3 really decoded to audio
    assert_librosa_parity(y)


@pytest.mark.parametrize("path", REAL_FILES, ids=[p.name for p in REAL_FILES])
def test_librosa_parity_real_music(path: Path) -> None:
    assert_librosa_parity(load_mono_16k(path))


def test_mel_filterbank_matches_librosa() -> None:
    expected = librosa.filters.mel(sr=SR, n_fft=512, n_mels=96)  # Slaney scale, Slaney norm
    ours = LogMel().mel_fb.numpy()
    assert ours.shape == expected.shape
    # torchaudio builds the filters in float32, librosa in float64: ~4e-6 × max apart.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * expected.max())


def test_frame_arithmetic() -> None:
    frontend = LogMel()
    assert frontend.n_samples_for(187) == 47616
    assert frontend.n_frames(47616) == 187
    for n_frames in (1, 2, 187, 1000):
        n_samples = frontend.n_samples_for(n_frames)
        assert frontend.n_frames(n_samples) == n_frames
        if n_samples > 0:  # fewest samples: one less gives one frame less
            assert frontend.n_frames(n_samples - 1) == n_frames - 1
    for n_samples in (47615, 47616, 47871, 47872, 1000):
        out = frontend(torch.randn(1, n_samples))
        assert out.shape == (1, *frontend.output_shape(n_samples))
        assert out.shape[-1] == frontend.n_frames(n_samples)

    waveform = Waveform()
    assert waveform.n_frames(59049) == waveform.n_samples_for(59049) == 59049
    x = torch.randn(2, 100)
    assert torch.equal(waveform(x), x)
    assert torch.equal(waveform(x[:, None]), x)


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_silence_is_finite(compression: str, autocast: bool) -> None:
    frontend = LogMel(compression)
    silence = torch.zeros(2, 47616)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = frontend(silence.bfloat16() if autocast else silence)
        direct = frontend.compression(torch.zeros(3, dtype=torch.bfloat16 if autocast else torch.float32))
    assert out.shape == (2, 1, 96, 187)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert direct.dtype == torch.float32 and torch.isfinite(direct).all()


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
def test_spectrogram_is_fp32_under_autocast(compression: str) -> None:
    """bf16-mixed must never touch the spectrogram: same result with and without autocast."""
    frontend = LogMel(compression)
    x = torch.from_numpy(music_like(seconds=1.0))[None]
    reference = frontend(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = frontend(x)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, rtol=1e-6, atol=1e-6)


def test_compression_formulas() -> None:
    power = torch.tensor([0.0, 1e-12, 1e-4, 1.0, 250.0])
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(build_compression("log_eps")(power), torch.log10(power + eps))
    torch.testing.assert_close(build_compression("log_c")(power), torch.log10(10000 * power + 1))
    torch.testing.assert_close(
        build_compression("db")(power),
        torch.from_numpy(librosa.power_to_db(power.numpy(), ref=1.0, amin=1e-10, top_db=None)),
    )
    log_learn = build_compression("log_learn")
    torch.testing.assert_close(log_learn(power), torch.log(1096.6332 * power + 1.3132617))


def test_log_learn_initial_values() -> None:
    frontend = LogMel("log_learn")
    values = frontend.logged_values()
    assert set(values) == {"alpha", "beta"}
    assert float(values["alpha"]) == pytest.approx(1096.633, rel=1e-5)
    assert float(values["beta"]) == pytest.approx(1.3133, abs=1e-4)
    # 0-d tensors outside the graph: read every step without a host sync, never a path for gradients
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in values.values())
    assert {name for name, _ in frontend.named_parameters()} == {"compression.a", "compression.b"}
    assert LogMel("log_eps").logged_values() == {}
    assert Waveform().logged_values() == {}


def test_unknown_compression_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown compression 'log_2'") as info:
        LogMel("log_2")
    for name in ("log_eps", "log_learn", "log_c", "db"):
        assert name in str(info.value)


def test_new_compression_is_one_class() -> None:
    class Sqrt(Compression):
        name = "sqrt_test"

        def compress(self, power: torch.Tensor) -> torch.Tensor:
            return power.sqrt()

    try:
        assert COMPRESSIONS["sqrt_test"] is Sqrt
        out = LogMel("sqrt_test")(torch.randn(1, 4096))
        assert out.shape == (1, 1, 96, 17) and (out >= 0).all()
    finally:
        del COMPRESSIONS["sqrt_test"]
