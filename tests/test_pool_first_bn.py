"""The pool-first block epilogue computes what BatchNorm1d → ReLU → MaxPool1d(3) computes.

Compared with the plain modules on the same weights: outputs, gradients of the input, conv
weight and bias and BN γ/β, and the BN running statistics after several steps — in float64
(to 1e-10: only summation order differs), float32 and bf16 autocast (stated tolerances), in
training and evaluation, with γ of both signs (and zero, where one number differs by design),
exact ties, torch.compile, and a whole SampleCNN with either block implementation.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from lightning_tagging.bench.configs import ModelConfig
from lightning_tagging.bench.estimate import estimate
from lightning_tagging.errors import UserError
from lightning_tagging.models import SampleCNN
from lightning_tagging.models.pool_first_bn import conv_maxpool_relu_bn, maxpool_relu_bn


def make_layer(
    c_in: int, channels: int, dtype: torch.dtype, momentum: float | None = 0.1
) -> tuple[nn.Conv1d, nn.BatchNorm1d]:
    """A block's conv and BN; γ of both signs (none zero), β nonzero, running statistics away from 0 and 1."""
    conv = nn.Conv1d(c_in, channels, 3, padding=1).to(dtype)
    bn = nn.BatchNorm1d(channels, momentum=momentum).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1.3, 1.7, channels, dtype=dtype))
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    assert (bn.weight < 0).any() and (bn.weight > 0).any() and (bn.weight != 0).all()
    return conv, bn


def plain(y: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    return F.max_pool1d(F.relu(bn(y)), 3)


def run_both(
    x: torch.Tensor,
    conv: nn.Conv1d,
    bn: nn.BatchNorm1d,
    device: torch.device,
    train: bool = True,
    steps: int = 3,
    autocast: bool = False,
    pool_first: Callable[[torch.Tensor, nn.BatchNorm1d], torch.Tensor] = maxpool_relu_bn,
) -> list[dict[str, torch.Tensor]]:
    """Output, gradients and BN buffers (on the CPU) after ``steps`` forward/backward passes of conv → epilogue
    on ``device``, plain then pool-first (``pool_first``: the function that runs it, e.g. compiled)."""
    results = []
    for epilogue in (plain, pool_first):
        c, b = copy.deepcopy(conv).to(device), copy.deepcopy(bn).to(device).train(train)
        xs = x.to(device, copy=True).requires_grad_()
        for step in range(steps):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = epilogue(c(xs), b)
            weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64, device=device).reshape(out.shape)
            (out.double() * (weights + step)).sum().backward()
        found = {
            "out": out.detach(),
            "x": xs.grad,
            "weight": c.weight.grad,
            "bias": c.bias.grad,
            "gamma": b.weight.grad,
            "beta": b.bias.grad,
            "running_mean": b.running_mean,
            "running_var": b.running_var,
            "batches": b.num_batches_tracked,
        }
        results.append({name: value.detach().cpu().clone() for name, value in found.items()})
    return results


def assert_same(results: list[dict[str, torch.Tensor]], rtol: float, atol: float) -> None:
    """Each pair close within ``rtol`` and ``atol`` times the largest reference value (at least 1)."""
    reference, pool_first = results
    for name in reference:
        assert pool_first[name].dtype == reference[name].dtype, name
        scale = reference[name].double().abs().max().clamp_min(1.0)
        if name == "bias" and reference["batches"] > 0:
            # In training, BatchNorm removes any per-channel shift: the conv bias's gradient is zero in exact
            # arithmetic, a sum of dy that cancels; its rounding noise scales like the conv weight's gradient.
            scale = reference["weight"].double().abs().max().clamp_min(1.0)
        torch.testing.assert_close(
            pool_first[name].double(),
            reference[name].double(),
            rtol=rtol,
            atol=atol * scale,
            msg=lambda m, name=name: f"{name}: {m}",
        )


TRAIN_EVAL = pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])


@TRAIN_EVAL
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_float64_same_outputs_gradients_and_running_stats(
    train: bool, momentum: float | None, device: torch.device
) -> None:
    torch.manual_seed(0)
    conv, bn = make_layer(4, 7, torch.float64, momentum)
    x = torch.randn(3, 4, 61, dtype=torch.float64)  # 61 = 3·20 + 1: the pool drops a tail the statistics keep
    results = run_both(x, conv, bn, device, train)
    assert int(results[1]["batches"]) == (3 if train else 0)
    assert_same(results, rtol=1e-10, atol=1e-12)


@TRAIN_EVAL
def test_float32_within_tolerance(train: bool, device: torch.device) -> None:
    torch.manual_seed(1)
    conv, bn = make_layer(16, 32, torch.float32)
    x = torch.randn(4, 16, 243) * 3 + 1
    assert_same(run_both(x, conv, bn, device, train), rtol=1e-4, atol=1e-5)


@TRAIN_EVAL
def test_bf16_autocast_is_as_accurate_as_plain_bf16(train: bool, device: torch.device) -> None:
    """Under autocast the conv runs in bf16 (relative step 2^-8) and BatchNorm returns bf16; against float64,
    the pool-first path must be about as close as the plain bf16 path: within 1.5× its error."""
    torch.manual_seed(2)
    conv, bn = make_layer(16, 32, torch.float32)
    x = torch.randn(4, 16, 243) * 3 + 1
    truth, _ = run_both(x.double(), copy.deepcopy(conv).double(), copy.deepcopy(bn).double(), device, train)
    plain_bf16, pool_first_bf16 = run_both(x, conv, bn, device, train, autocast=True)
    assert pool_first_bf16["out"].dtype == plain_bf16["out"].dtype == torch.bfloat16

    def error(result: dict[str, torch.Tensor], name: str) -> float:
        want = truth[name].double()
        return float((result[name].double() - want).norm() / want.norm().clamp_min(1e-30))

    for name in truth:
        if name == "batches":
            assert torch.equal(pool_first_bf16[name], plain_bf16[name])
            continue
        if name == "bias" and train:  # zero in exact arithmetic (assert_same): no relative error to compare
            continue
        assert error(pool_first_bf16, name) <= 1.5 * error(plain_bf16, name) + 1e-5, (
            f"{name}: pool-first bf16 {error(pool_first_bf16, name):.2e} vs plain bf16 {error(plain_bf16, name):.2e}"
        )


def test_exact_ties_route_the_gradient_like_max_pool(device: torch.device) -> None:
    """Digital silence: over a run of zero input samples the conv output is its bias at every position,
    so windows hold equal values. Both paths send the window's gradient to the first of them."""
    torch.manual_seed(3)
    conv, bn = make_layer(2, 6, torch.float64)
    x = torch.randn(2, 2, 90, dtype=torch.float64)
    x[:, :, 20:70] = 0.0
    assert_same(run_both(x, conv, bn, device), rtol=1e-10, atol=1e-12)


def test_zero_gamma_differs_only_in_its_own_gradient(device: torch.device) -> None:
    """γ = 0: output relu(β) everywhere in both. γ's gradient is the derivative for γ growing from 0 (the
    window's max of y), where the plain pool takes the first of three equal values; all else is the same."""
    torch.manual_seed(4)
    conv, bn = make_layer(3, 5, torch.float64)
    with torch.no_grad():
        bn.weight[2] = 0.0
        bn.bias[2] = 0.3  # relu(β) > 0: the gradient flows
    x = torch.randn(2, 3, 60, dtype=torch.float64)
    reference, pool_first = run_both(x, conv, bn, device, steps=1)
    gamma_plain, gamma_pool_first = reference.pop("gamma"), pool_first.pop("gamma")
    assert_same([reference, pool_first], rtol=1e-10, atol=1e-12)
    others = [c for c in range(5) if c != 2]
    torch.testing.assert_close(gamma_pool_first[others], gamma_plain[others], rtol=1e-10, atol=1e-12)

    y = conv(x)[:, 2].detach()  # [B, T] of the γ = 0 channel
    var, mean = torch.var_mean(y, correction=0)
    window_max = y.unflatten(-1, (20, 3)).amax(-1)  # [B, 20]
    weights = torch.linspace(-1, 1, 2 * 5 * 20, dtype=torch.float64).reshape(2, 5, 20)[:, 2]
    expected = (weights * (window_max - mean)).sum() / torch.sqrt(var + bn.eps)
    torch.testing.assert_close(gamma_pool_first[2], expected, rtol=1e-10, atol=1e-12)


def test_compiled_same_as_plain(device: torch.device) -> None:
    """torch.compile traces the custom backward too (aot_eager: the traced graphs, run eagerly)."""
    torch.manual_seed(5)
    conv, bn = make_layer(4, 6, torch.float64, momentum=None)
    x = torch.randn(2, 4, 45, dtype=torch.float64)
    compiled = torch.compile(maxpool_relu_bn, backend="aot_eager", fullgraph=True)
    assert_same(run_both(x, conv, bn, device, pool_first=compiled), rtol=1e-10, atol=1e-12)


def test_keeps_less_for_backward() -> None:
    """Autograd holds no full-length BN or ReLU output, only the pooled conv output: a SampleCNN's training
    forward at batch 2 saves 121 MiB instead of 142 (float32; what is left is mostly the conv inputs and
    outputs and the pool indices, which both keep)."""
    saved = {}
    for impl in ("plain", "pool_first"):
        torch.manual_seed(6)
        model = SampleCNN(n_tags=5, block_impl=impl).train()
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor, storages: dict[int, int] = storages) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.randn(2, 59049))
        saved[impl] = sum(storages.values())
    # Per block, the ReLU output [B, C, T] is gone and the pooled conv output [B, C, T/3] kept: 2/3 of the
    # blocks' conv outputs, 2·(128·19683 + 128·6561 + 256·(2187 + 729 + …)) floats = 21 MiB.
    assert saved["plain"] - saved["pool_first"] > 20 * 2**20, saved


def test_a_training_step_makes_no_host_sync() -> None:
    """Fake tensors hold no data: reading a value on the host raises. Momentum None included, whose
    cumulative factor plain BatchNorm reads with float() (the pool-first path keeps it on the device)."""
    with FakeTensorMode():
        conv, bn = nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4, momentum=None)
        maxpool_relu_bn(conv(torch.randn(2, 2, 27)), bn).sum().backward()
        model = SampleCNN(n_tags=5, block_impl="pool_first").train()
        model(torch.randn(2, 59049)).sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def samplecnn_pair(train: bool, device: torch.device) -> tuple[SampleCNN, SampleCNN]:
    """A plain and a pool-first SampleCNN with one state_dict; every block's γ negative in a third of its channels."""
    torch.manual_seed(7)
    reference = SampleCNN(n_tags=6, dropout=0.0).double()
    with torch.no_grad():
        for block in reference.blocks:
            bn = block[0][1]
            bn.weight[::3] *= -1
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    pool_first = SampleCNN(n_tags=6, dropout=0.0, block_impl="pool_first").double()
    pool_first.load_state_dict(reference.state_dict())
    return reference.to(device).train(train), pool_first.to(device).train(train)


@TRAIN_EVAL
def test_whole_samplecnn_same_function(train: bool, device: torch.device) -> None:
    reference, pool_first = samplecnn_pair(train, device)
    x = torch.randn(2, 59049, dtype=torch.float64, device=device)
    weights = torch.linspace(-1, 1, 12, dtype=torch.float64, device=device).reshape(2, 6)
    outputs = []
    for model in (reference, pool_first):
        out = model(x)
        (out * weights).sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-10, atol=1e-12)
    for (name, got), want in zip(pool_first.named_parameters(), reference.parameters(), strict=True):
        # Relative to the largest gradient of each parameter (seen: ≤ 2e-11); conv biases have zero
        # gradients in exact arithmetic (assert_same), seen ≤ 6e-13.
        scale = float(want.grad.abs().max().clamp_min(1.0))
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-10, atol=1e-10 * scale, msg=name)
    for (name, got), want in zip(pool_first.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)


def test_either_block_impl_has_the_same_state_dict_and_parameters() -> None:
    plain_model, pool_first = SampleCNN(), SampleCNN(block_impl="pool_first")
    assert list(pool_first.state_dict()) == list(plain_model.state_dict())
    assert sum(p.numel() for p in pool_first.parameters() if p.requires_grad) == 1_869_874
    pool_first.use_block_impl("plain")
    assert all(block.impl == "plain" for block in pool_first.blocks)


def test_plain_args_select_the_plain_blocks() -> None:
    assert all(block.impl == "plain" for block in SampleCNN(**SampleCNN.plain_args).blocks)


def test_unknown_block_impl_is_a_user_error() -> None:
    expected = r"unknown samplecnn block_impl 'fused'; choose one of \('plain', 'pool_first', 'nhwc', "
    expected += r"'pool_first_nhwc', 'auto'\)"
    with pytest.raises(UserError, match=expected):
        SampleCNN(block_impl="fused")


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
@TRAIN_EVAL
def test_the_sign_folded_into_the_conv_changes_no_bit(train: bool, autocast: bool) -> None:
    """The blocks negate the filters whose γ < 0 instead of multiplying the conv output by the sign
    (conv_maxpool_relu_bn): the same outputs, gradients and running statistics, bit for bit."""
    torch.manual_seed(8)
    conv, bn = make_layer(4, 6, torch.float32)
    x = torch.randn(2, 4, 45)
    results = []
    for folded in (False, True):
        c, b = copy.deepcopy(conv), copy.deepcopy(bn).train(train)
        xs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if folded:
                out = conv_maxpool_relu_bn(lambda weight, bias, c=c, xs=xs: F.conv1d(xs, weight, bias, padding=1), c, b)
            else:
                out = maxpool_relu_bn(c(xs), b)
        (out.float() * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        results.append([out, xs.grad, c.weight.grad, c.bias.grad, b.weight.grad, b.bias.grad, *b.buffers()])
    for index, (unfolded, folded) in enumerate(zip(*results, strict=True)):
        assert torch.equal(unfolded, folded), index


def test_the_estimate_counts_less_traffic_than_the_plain_blocks_in_fp32() -> None:
    """`lt bench estimate` (fake tensors, batch 256): fewer bytes per training clip than the plain modules
    (0.455 GB; 0.449 before the sign was folded into the convs, and more than plain before that)."""
    plain, pool_first = (estimate(ModelConfig("samplecnn", 256, backbone_args=json.dumps({"block_impl": impl})))
                         for impl in ("plain", "pool_first"))
    assert pool_first.train_gb_per_clip < 0.97 * plain.train_gb_per_clip, (pool_first, plain)
