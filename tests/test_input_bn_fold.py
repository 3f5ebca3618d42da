"""musicnn with its input BatchNorm folded into the front-end convs computes the same function and gradients."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lightning_tagging.models import Musicnn

N_MELS, FRAMES = 96, 40


def pair(conv_impl: str, dtype: torch.dtype = torch.float64) -> tuple[Musicnn, Musicnn]:
    """Two musicnns with the same weights, folded and plain; the input BN's γ, β away from 1 and 0."""
    torch.manual_seed(0)
    folded = Musicnn(n_tags=5, width=0.25, dropout=0.0, conv_impl=conv_impl).to(dtype).train()
    with torch.no_grad():
        folded.input_bn.weight.fill_(1.7)
        folded.input_bn.bias.fill_(-0.4)
    plain = copy.deepcopy(folded)
    plain.fold_input_bn = False
    return folded, plain


def train_step(
    model: Musicnn,
    x: torch.Tensor,
    autocast: bool = False,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Logits, every parameter's gradient and every BN's running stats after one forward (``model``'s, or
    ``forward``) and backward."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = (model if forward is None else forward)(x)
    F.binary_cross_entropy_with_logits(logits.float(), torch.zeros_like(logits, dtype=torch.float32)).backward()
    result = {"logits": logits.detach().double()}
    result |= {f"grad {name}": p.grad.double() for name, p in model.named_parameters()}
    result |= {f"buffer {name}": b.double() for name, b in model.named_buffers()}
    return result


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def zero_in_exact_arithmetic(gradient: torch.Tensor) -> bool:
    """A BN shift whose output reaches the loss only through another training-mode BN gets a gradient
    that sums to zero over the batch: float64 leaves about 1e-17 of noise, nothing to compare."""
    return gradient.norm() < 1e-12


def loss(model: Musicnn, x: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient reaches the front-end (a plain sum would not: the BN before the classifier
    makes the batch sum of the logits constant)."""
    logits = model(x)
    return F.binary_cross_entropy_with_logits(logits.float(), torch.zeros_like(logits, dtype=torch.float32))


@pytest.mark.parametrize("conv_impl", ["conv2d", "mel_windows", "mel_band"])
def test_folding_changes_neither_outputs_nor_gradients_nor_running_stats(conv_impl: str) -> None:
    folded, plain = pair(conv_impl)
    x = torch.randn(3, 1, N_MELS, FRAMES, dtype=torch.float64) * 2 + 1
    got, want = train_step(folded, x), train_step(plain, x)
    assert got.keys() == want.keys()
    for name in want:
        if zero_in_exact_arithmetic(want[name]):
            assert zero_in_exact_arithmetic(got[name]), name
        else:
            assert relative_error(got[name], want[name]) < 1e-10, name
    assert got["grad input_bn.weight"].abs() > 0 and got["grad input_bn.bias"].abs() > 0


def test_folding_in_float32_is_as_accurate_and_bf16_autocast_does_not_fold() -> None:
    x64 = torch.randn(3, 1, N_MELS, FRAMES, dtype=torch.float64)
    truth = train_step(pair("conv2d")[1], x64)
    folded, plain = pair("conv2d", torch.float32)
    got, want = train_step(folded, x64.float()), train_step(plain, x64.float())
    for name in want:
        if not zero_in_exact_arithmetic(truth[name]):
            assert relative_error(got[name], want[name]) < 1e-4, name
    # Under bf16 autocast the plain path runs (the folded one rounds twice): the same result, bit for bit.
    folded, plain = pair("conv2d", torch.float32)
    got, want = train_step(folded, x64.float(), autocast=True), train_step(plain, x64.float(), autocast=True)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_folding_skips_the_spectrogram_gradient() -> None:
    """The plain step's convolution backward also computes each front-end conv's input gradient, which costs
    that conv's forward FLOPs; the folded step does not (it adds a one-row conv of ones per branch)."""
    folded, plain = pair("conv2d", torch.float32)
    x = torch.randn(4, 1, N_MELS, FRAMES)

    def backward_conv_flops(model: Musicnn) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            loss(model, x).backward()
        return counter.get_flop_counts()["Global"][torch.ops.aten.convolution_backward]

    front_end_forward = 0
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        for branch in (plain.timbral_f74, plain.timbral_f77, plain.temporal_s1, plain.temporal_s2, plain.temporal_s3):
            branch.conv(F.pad(x, branch.time_padding))
    front_end_forward = counter.get_total_flops()
    saved = backward_conv_flops(plain) - backward_conv_flops(folded)
    assert saved == pytest.approx(front_end_forward, rel=0.02)


def test_a_spectrogram_that_needs_a_gradient_is_not_folded_and_gets_it() -> None:
    """log_learn's compression is learned: its input needs the gradient, which the plain path gives."""
    folded, plain = pair("conv2d")
    x = torch.randn(2, 1, N_MELS, FRAMES, dtype=torch.float64)
    grads = []
    for model in (folded, plain):
        leaf = x.clone().requires_grad_()
        loss(model, leaf).backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_evaluation_and_fused_branches_use_the_plain_path_with_the_same_result() -> None:
    folded, plain = pair("fused")
    x = torch.randn(2, 1, N_MELS, FRAMES, dtype=torch.float64)
    assert not folded._folds_input_bn(x, (folded.timbral_f74,))
    folded.use_conv_impl("conv2d")
    plain.use_conv_impl("conv2d")
    assert folded._folds_input_bn(x, (folded.timbral_f74,))
    folded.eval(), plain.eval()
    with torch.no_grad():
        assert not folded._folds_input_bn(x, (folded.timbral_f74,))
        assert torch.equal(folded(x), plain(x))


def test_the_folded_forward_traces_through_torch_compile() -> None:
    """Through dynamo and AOT autograd (the eager backend runs their graphs without generating code), folded
    against plain: the same gradients and running statistics, the batch counter included (a buffer the fold
    updates itself). Both compiled: under compile musicnn's max over mel sends a tie's gradient to one index
    (``musicnn.max_over``), and a ReLU column of zeros is such a tie, so eager and compiled may differ there.
    In float64, as float32's rounding differences can flip a near-tie of that max to another mel band."""
    from lightning_tagging.compiling import compile_callable

    folded, plain = pair("mel_windows")
    forwards = [compile_callable(model, "cpu", backend="aot_eager") for model in (folded, plain)]
    x = torch.randn(3, 1, N_MELS, FRAMES, dtype=torch.float64)
    for step in range(2):  # the second step runs the cached graphs
        got, want = train_step(folded, x, forward=forwards[0]), train_step(plain, x, forward=forwards[1])
        for name in want:
            if not zero_in_exact_arithmetic(want[name]):
                assert relative_error(got[name], want[name]) < 1e-9, (step, name)
    assert int(folded.input_bn.num_batches_tracked) == int(plain.input_bn.num_batches_tracked) == 2
