"""`model.compile`: the training forward through torch.compile computes what the eager one does.

The model is musicnn ×0.1 with library convs: 20 timbral and 5 temporal filters, the filter counts
at which torch 2.11's CPU inductor corrupts the heap unless `compiling.compile_callable` turns its
layout optimisation off. Every test here builds the same graph (shapes included), so after the first
compile the others find it in inductor's on-disk cache. Dropout is off: compiled code draws its
random numbers differently, so with dropout the two would train on different masks. The gradient
tests also run on a GPU where there is one (tests/conftest.py's ``device``; scripts/device-bench.sh).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_tagging.cli import main
from lightning_tagging.compiling import compile_callable
from lightning_tagging.errors import UserError
from lightning_tagging.frontends import LogMel
from lightning_tagging.models import Musicnn
from lightning_tagging.module import TaggingModule
from lightning_tagging.training_cli import TaggingCLI

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "experiments" / "demo.yaml")
BATCH = 4
MUSICNN_ARGS = {"width": 0.1, "dropout": 0.0, "conv_impl": "conv2d"}
STEPS = 2


def tiny_musicnn(n_tags: int, compile: bool, device: torch.device) -> TaggingModule:
    torch.manual_seed(0)
    module = TaggingModule(LogMel("log_learn"), Musicnn(n_tags=n_tags, **MUSICNN_ARGS), compile=compile)
    return module.to(device).train()


def loss_and_gradients(module: TaggingModule, audio: torch.Tensor, targets: torch.Tensor,
                       autocast: bool) -> tuple[float, torch.Tensor]:
    """One training forward + backward; the loss and every parameter's gradient, concatenated."""
    module.zero_grad(set_to_none=True)
    with torch.autocast(audio.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = module.training_forward(audio)
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in module.parameters()])


def same_musicnn_pair(
    corpus: Path, device: torch.device
) -> tuple[TaggingModule, TaggingModule, torch.Tensor, torch.Tensor]:
    """An eager and a compiled musicnn with the same weights on ``device``, and one batch of audio and targets."""
    n_tags = len(json.loads((corpus / "vocab.json").read_text()))
    eager, compiled = tiny_musicnn(n_tags, False, device), tiny_musicnn(n_tags, True, device)
    compiled.load_state_dict(eager.state_dict())
    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(BATCH, eager.train_crop_samples, generator=generator) * 0.1
    targets = (torch.rand(BATCH, n_tags, generator=generator) < 0.2).float()
    return eager, compiled, audio.to(device), targets.to(device)


def test_the_compiled_training_forward_matches_the_eager_one_in_fp32(tiny_corpus: Path, device: torch.device) -> None:
    """Same weights, same batch: the loss and all gradients agree to 1e-4 (relative, in norm)."""
    eager, compiled, audio, targets = same_musicnn_pair(tiny_corpus, device)
    eager_loss, eager_grads = loss_and_gradients(eager, audio, targets, autocast=False)
    for _ in range(2):  # the first call compiles; the second runs the cached code
        compiled_loss, compiled_grads = loss_and_gradients(compiled, audio, targets, autocast=False)
        assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
        assert (compiled_grads - eager_grads).norm() <= 1e-4 * eager_grads.norm()
    assert compiled._compiled_forward is not None and eager._compiled_forward is None


def test_compiled_bf16_gradients_are_finite_and_as_close_to_fp32_as_eager_bf16s(
    tiny_corpus: Path, device: torch.device
) -> None:
    """bf16 rounding moves this small model's gradients by about 30 % (in norm) from fp32's; compiled
    bf16 must be no further (×1.25), and finite: inductor's own amax backward gave NaN here."""
    eager, compiled, audio, targets = same_musicnn_pair(tiny_corpus, device)
    _, fp32_grads = loss_and_gradients(eager, audio, targets, autocast=False)
    bf16_loss, bf16_grads = loss_and_gradients(eager, audio, targets, autocast=True)
    compiled_loss, compiled_grads = loss_and_gradients(compiled, audio, targets, autocast=True)
    assert torch.isfinite(compiled_grads).all()
    assert compiled_loss == pytest.approx(bf16_loss, rel=1e-2)
    eager_error = (bf16_grads - fp32_grads).norm()
    assert 0 < (compiled_grads - fp32_grads).norm() <= 1.25 * eager_error


def fit_args(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    """`lt fit` of musicnn ×0.1 with plain SGD (an update linear in the gradient, so runs compare closely)."""
    backbone = [arg for key, value in MUSICNN_ARGS.items()
                for arg in (f"--model.backbone.init_args.{key}", str(value))]
    return ["fit", "--config", DEMO_CONFIG, "--data.root", str(corpus), "--data.batch_size", str(BATCH),
            "--data.num_workers", "0", "--data.shuffle_buffer", "8", *backbone,
            "--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.01",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(STEPS),
            "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(run_dir), *extra]


def test_lt_fit_with_model_compile_trains_the_same_weights_into_the_same_checkpoint(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    initial = TaggingCLI(args=fit_args(tiny_corpus, tmp_path / "unused")[1:], run=False).model.state_dict()
    assert main(fit_args(tiny_corpus, tmp_path / "eager")) == 0
    assert main(fit_args(tiny_corpus, tmp_path / "compiled", "--model.compile", "true")) == 0
    eager = torch.load(tmp_path / "eager" / "checkpoints" / "last.ckpt", weights_only=False)
    compiled = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", weights_only=False)
    assert compiled["hyper_parameters"]["compile"] is True
    assert compiled["global_step"] == eager["global_step"] == STEPS
    assert compiled["state_dict"].keys() == eager["state_dict"].keys()  # no "_orig_mod." prefixes

    def update(checkpoint: dict) -> torch.Tensor:  # what training changed, every float tensor
        return torch.cat([(value - initial[name]).flatten() for name, value in checkpoint["state_dict"].items()
                          if value.is_floating_point()])

    assert (update(compiled) - update(eager)).norm() <= 1e-3 * update(eager).norm()
    # A checkpoint trained compiled loads into an eager model, and into a compiled one.
    for compile in (False, True):
        module = TaggingModule.load_from_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.ckpt",
                                                    compile=compile)
        assert module.compile_mode == ("default" if compile else None)


def test_an_unknown_compile_mode_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="reduce-overhead"):
        TaggingModule(LogMel(), Musicnn(width=0.1), compile=True, compile_mode="fastest")
    with pytest.raises(UserError, match="max-autotune"):
        compile_callable(torch.relu, "cpu", mode="turbo")
