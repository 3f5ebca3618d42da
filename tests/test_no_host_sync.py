"""A training step's model math never reads a value on the host.

On a GPU, ``.item()``, ``.tolist()``, ``bool(tensor)``, ``torch.equal`` and shapes that depend
on values make the CPU wait for the GPU, so it stops queueing the next kernels ahead: at
tens of steps per second that idles the GPU. Fake tensors hold no data, so any such read
raises; every compression and every backbone runs a forward, the loss and a backward on
them. On a GPU (scripts/device-bench.sh), CUDA's sync debug mode checks a real step too.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from lightning_tagging.frontends import COMPRESSIONS, Frontend, LogMel, Waveform
from lightning_tagging.models import BACKBONES, Backbone, Musicnn, fused_branch
from lightning_tagging.module import TaggingModule

# Every registered backbone at its defaults (fake tensors cost no memory), and musicnn's fused branches.
BACKBONE_VARIANTS: dict[str, Callable[[], Backbone]] = {
    **{name: (lambda cls=cls: cls(n_tags=5)) for name, cls in BACKBONES.items()},
    "musicnn-fused": lambda: Musicnn(n_tags=5, conv_impl="fused"),
    "musicnn-fused-triton": lambda: Musicnn(n_tags=5, conv_impl="fused_triton"),  # (kernels skip fake tensors)
}


@pytest.fixture(autouse=True)
def recompute_check_not_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused branch's recompute check reads the device, but only now and then: not due here."""
    monkeypatch.setattr(fused_branch, "_RECOMPUTE_CHECK", fused_branch._SampledCheck(first=0, every=10**9))


def train_step_on_fake_tensors(frontend: Frontend, make_backbone: Callable[[], Backbone]) -> None:
    # The backbone is built inside, so its weights are fake; the front-end's buffers (mel filters,
    # window: building them reads values) and its parameters are real and join the fake step.
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = TaggingModule(frontend, make_backbone()).train()
        audio = torch.randn(2, model.train_crop_samples)
        loss = F.binary_cross_entropy_with_logits(model(audio).float(), torch.zeros(2, 5))
        loss.backward()
        assert all(p.grad is not None for p in model.backbone.parameters())


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
def test_every_compression_trains_without_host_syncs(compression: str) -> None:
    train_step_on_fake_tensors(LogMel(compression=compression), BACKBONE_VARIANTS["musicnn-fused"])


@pytest.mark.parametrize("backbone", sorted(BACKBONE_VARIANTS))
def test_every_backbone_trains_without_host_syncs(backbone: str) -> None:
    make_backbone = BACKBONE_VARIANTS[backbone]
    with FakeTensorMode():
        waveform_input = make_backbone().input_kind == "waveform"
    train_step_on_fake_tensors(Waveform() if waveform_input else LogMel(), make_backbone)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="sync debug mode needs a GPU (device-bench.sh)")
@pytest.mark.parametrize("conv_impl", ["fused", "fused_triton"])
@pytest.mark.parametrize("compression", ["log_learn", "log_eps"])
def test_a_cuda_training_step_makes_no_host_sync(conv_impl: str, compression: str) -> None:
    """The same on a real GPU, optimizer step included: CUDA raises on any synchronizing call. (log_eps: the
    input BN folds into the front-end; log_learn: the spectrogram needs its gradient, so it does not.)"""
    model = TaggingModule(LogMel(compression=compression), Musicnn(n_tags=5, width=0.1, conv_impl=conv_impl)).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    audio = torch.randn(4, model.train_crop_samples, device="cuda")
    tags = torch.randint(0, 2, (4, 5), device="cuda").float()

    def step() -> None:
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(audio).float(), tags).backward()
        optimizer.step()

    step()  # the first step sets up CUDA, cuFFT and Adam's state lazily
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
