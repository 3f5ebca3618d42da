"""Backbones: parameter counts, front-end × backbone forward/backward, TF-compatible layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_tagging.frontends import COMPRESSIONS, Frontend, LogMel, Waveform
from lightning_tagging.models import BACKBONES, VGG, Backbone, Musicnn, MusicnnBig, SampleCNN, build_backbone
from lightning_tagging.models.musicnn import tf_same_padding


def n_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("samplecnn", 1_869_874), ("musicnn", 787_159), ("musicnn_big", 7_980_235), ("vgg", 605_748)],
)
def test_parameter_counts(name: str, expected: int) -> None:
    assert n_trainable(build_backbone(name, n_tags=50)) == expected


def test_input_lengths() -> None:
    assert SampleCNN().input_length == 59049
    assert Musicnn().input_length == 187 == VGG().input_length
    assert LogMel().n_samples_for(Musicnn().input_length) == 47616
    assert Waveform().n_samples_for(SampleCNN().input_length) == 59049


def _pairs() -> list[tuple[str, Frontend, Backbone]]:
    pairs: list[tuple[str, Frontend, Backbone]] = [("waveform-samplecnn", Waveform(), SampleCNN(n_tags=10))]
    for compression in sorted(COMPRESSIONS):
        pairs.append((f"{compression}-musicnn", LogMel(compression), Musicnn(n_tags=10, width=0.25)))
        pairs.append((f"{compression}-vgg", LogMel(compression), VGG(n_tags=10, filters=16)))
    return pairs


@pytest.mark.parametrize("pair", _pairs(), ids=lambda p: p[0])
def test_forward_backward(pair: tuple[str, Frontend, Backbone]) -> None:
    _, frontend, backbone = pair
    torch.manual_seed(0)
    assert frontend.output_kind == backbone.input_kind
    n_samples = frontend.n_samples_for(backbone.input_length)
    x = 0.1 * torch.randn(2, n_samples)
    model = nn.Sequential(frontend, backbone).train()
    features = frontend(x)
    assert features.shape[-1] == backbone.input_length
    logits = model(x)
    assert logits.shape == (2, backbone.n_tags)
    F.binary_cross_entropy_with_logits(logits, torch.randint(0, 2, logits.shape).float()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
    if getattr(frontend, "compression_name", None) == "log_learn":
        compression = frontend.compression
        assert compression.a.grad.abs() > 0 and compression.b.grad.abs() > 0


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_default_backbones_forward_and_embed(name: str) -> None:
    backbone = build_backbone(name).eval()
    shape = (2, 59049) if backbone.input_kind == "waveform" else (2, 1, 96, 187)
    x = torch.randn(shape)
    with torch.no_grad():
        logits, embedding = backbone(x), backbone.embed(x)
    expected_dim = {"samplecnn": 512, "musicnn": 200, "musicnn_big": 500, "vgg": 256}[name]
    assert logits.shape == (2, 50)
    assert embedding.shape == (2, expected_dim)
    assert torch.isfinite(logits).all()


def test_samplecnn_accepts_channel_axis() -> None:
    backbone = SampleCNN(n_tags=3).eval()
    x = torch.randn(1, 59049)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), backbone(x[:, None]))


def test_musicnn_bf16_autocast() -> None:
    model = nn.Sequential(LogMel("log_learn"), Musicnn(n_tags=5, width=0.25)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model[0](torch.zeros(1, 47616)).dtype == torch.float32
        logits = model(0.1 * torch.randn(2, 47616))
    assert torch.isfinite(logits.float()).all()


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on its hidden copy
def test_musicnn_tf_layout() -> None:
    """Shapes and orders the TF checkpoint import relies on."""
    model = Musicnn(n_tags=50).eval()
    assert model.timbral_f74.conv.weight.shape == (204, 1, 38, 7)
    assert model.timbral_f77.conv.weight.shape == (204, 1, 67, 7)
    assert [b.conv.weight.shape[-1] for b in (model.temporal_s1, model.temporal_s2, model.temporal_s3)] == [
        128,
        64,
        32,
    ]
    assert model.midend_conv1.conv.weight.shape == (64, 561, 7)
    assert model.dense.weight.shape == (200, 1506)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert module.eps == 1e-3 and module.momentum == pytest.approx(0.01)

    # TF "same" padding for even kernels: (k-1)//2 before, the rest after — as torch's "same".
    assert tf_same_padding(128) == (63, 64) and tf_same_padding(7) == (3, 3)
    x = torch.randn(2, 1, 96, 50)
    branch = model.temporal_s1
    reference = F.conv2d(x, branch.conv.weight, branch.conv.bias, padding="same")
    expected = branch.bn(F.relu(reference)).amax(dim=2)
    torch.testing.assert_close(branch(x), expected)

    # The back-end flattens [max, mean] interleaved per channel, as TF's flatten of concat(axis=2).
    seen: dict[str, torch.Tensor] = {}
    model.pool_bn.register_forward_hook(lambda _m, inputs, _out: seen.update(pooled=inputs[0]))
    with torch.no_grad():
        feats = model.features(x)
    assert feats["cnn3"].shape == (2, 64, 50)
    torch.testing.assert_close(seen["pooled"][:, 0::2], feats["max_pool"])
    torch.testing.assert_close(seen["pooled"][:, 1::2], feats["mean_pool"])


def test_vgg_flattens_in_tf_order() -> None:
    model = VGG(n_tags=4, filters=8).eval()
    seen: dict[str, torch.Tensor] = {}
    model.blocks[-1].register_forward_hook(lambda _m, _in, out: seen.update(pool5=out))
    with torch.no_grad():
        embedding = model.embed(torch.randn(2, 1, 96, 187))
    pool5 = seen["pool5"]  # [B, C, mel, time]
    assert pool5.shape == (2, 8, 1, 2)
    torch.testing.assert_close(embedding, pool5.permute(0, 3, 2, 1).reshape(2, -1))


def test_width_scales_musicnn() -> None:
    model = Musicnn(width=0.5)
    assert model.timbral_f74.conv.out_channels == 102  # int(1.6 * 128 * 0.5)
    assert model.temporal_s1.conv.out_channels == 25  # int(1.6 * 32 * 0.5)
    assert model.midend_conv1.conv.out_channels == 32
    assert model.dense.out_features == 100
    assert MusicnnBig().midend_conv1.conv.out_channels == 512


def test_unknown_backbone_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet'") as info:
        build_backbone("resnet")
    for name in ("samplecnn", "musicnn", "musicnn_big", "vgg"):
        assert name in str(info.value)


def test_wrong_input_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="96"):
        Musicnn()(torch.randn(1, 1, 128, 187))
    with pytest.raises(ValueError, match="187"):
        VGG()(torch.randn(1, 1, 96, 100))
    with pytest.raises(ValueError, match="59049"):
        SampleCNN()(torch.randn(1, 48000))
    with pytest.raises(ValueError, match="at least"):
        VGG(n_frames=40)
