"""SampleCNN(block_impl="nhwc" | "pool_first_nhwc") computes what the plain modules compute, every conv channels-last.

On the same weights: outputs, every parameter's gradient and the BN buffers after a training step,
in float64 (only summation order differs), float32 and bf16 autocast, in training and evaluation;
what reaches each convolution is channels-last (so cuDNN has nothing to transpose); no host syncs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_tagging.errors import UserError
from lightning_tagging.models import SampleCNN
from lightning_tagging.models import samplecnn_nhwc as nhwc

TRAIN_EVAL = pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
NHWC_IMPLS = pytest.mark.parametrize("impl", ["nhwc", "pool_first_nhwc"])


def samplecnn_pair(train: bool, device: torch.device, dtype: torch.dtype,
                   impl: str = "nhwc") -> tuple[SampleCNN, SampleCNN]:
    """A plain and an ``impl`` SampleCNN with one state_dict; BN γ of both signs and running statistics away
    from 0 and 1."""
    torch.manual_seed(3)
    reference = SampleCNN(n_tags=6, dropout=0.0).to(dtype)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight[::3] *= -1
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    channels_last = SampleCNN(n_tags=6, dropout=0.0, block_impl=impl).to(dtype)
    channels_last.load_state_dict(reference.state_dict())
    return reference.to(device).train(train), channels_last.to(device).train(train)


def step(model: SampleCNN, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output, parameter gradients and buffers (on the CPU) after one forward/backward."""
    out = model(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=x.device).reshape(out.shape)
    (out * weights).sum().backward()
    found = {"out": out.detach()}
    found |= {f"grad {name}": p.grad for name, p in model.named_parameters()}
    found |= {f"buffer {name}": b for name, b in model.named_buffers() if b.is_floating_point()}
    return {name: tensor.detach().cpu() for name, tensor in found.items()}


@NHWC_IMPLS
@TRAIN_EVAL
def test_float64_same_outputs_gradients_and_running_stats(impl: str, train: bool, device: torch.device) -> None:
    reference, channels_last = samplecnn_pair(train, device, torch.float64, impl)
    x = torch.randn(2, 59049, dtype=torch.float64, device=device)
    expected, found = step(reference, x), step(channels_last, x)
    assert found.keys() == expected.keys()
    for name, want in expected.items():
        # Relative to each tensor's largest value (gradients seen within 2e-12 of it).
        scale = float(want.abs().max().clamp_min(1.0))
        torch.testing.assert_close(found[name], want, rtol=1e-10, atol=1e-10 * scale, msg=name)
    assert torch.equal(channels_last.stem[1].num_batches_tracked, reference.stem[1].num_batches_tracked)


def layer_step(layers: nn.Sequential, x: torch.Tensor, impl: str, autocast: bool) -> dict[str, torch.Tensor]:
    """Output and gradients (input, parameters; float64 on the CPU) of a stem (conv, BN, ReLU) or a block
    (that and a max-pool) on ``x`` ``[B, C, T]``: the modules themselves (``impl`` "plain"), or
    ``samplecnn_nhwc``'s functions."""
    x = x.detach().clone().requires_grad_()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        if impl == "plain":
            out = layers(x)
        elif isinstance(layers[-1], nn.MaxPool1d):
            out = nhwc.block(layers, nhwc.to_nhwc(x), pool_first=impl == "pool_first_nhwc").squeeze(2)
        else:
            out = nhwc.conv_bn_relu(layers, nhwc.to_nhwc(x)).squeeze(2)
    weights = torch.linspace(-1, 1, out.numel(), device=x.device).reshape(out.shape)
    (out.float() * weights).sum().backward()
    found = {"out": out, "grad x": x.grad} | {f"grad {name}": p.grad for name, p in layers.named_parameters()}
    return {name: tensor.detach().double().cpu() for name, tensor in found.items()}


@NHWC_IMPLS
@TRAIN_EVAL
@pytest.mark.parametrize("layer", ["stem", "block"])
def test_float32_and_bf16_as_accurate_as_the_plain_modules(layer: str, train: bool, impl: str,
                                                          device: torch.device) -> None:
    """Against float64, the NHWC stem and block in float32 and under bf16 autocast: errors within 1.5× the plain
    modules' (+ a floor). (One layer, not the whole network: at batch 2 its last BatchNorm normalises two values,
    which leaves no correct digit in bf16 whichever the layout.)"""
    model = samplecnn_pair(train, device, torch.float64)[0]
    layers = model.stem if layer == "stem" else model.blocks[2]
    shape = (4, 1, 729) if layer == "stem" else (4, 128, 243)
    x = torch.randn(shape, dtype=torch.float64, device=device)
    exact = layer_step(layers, x, "plain", autocast=False)
    for autocast, floor in ((False, 1e-6), (True, 1e-3)):
        rounded = copy.deepcopy(layers).float()
        plain, channels_last = (layer_step(copy.deepcopy(rounded), x.float(), layout, autocast)
                                for layout in ("plain", impl))
        for name, want in exact.items():
            # A conv bias before a BatchNorm has no gradient in exact arithmetic: measured against the size
            # of its conv weight's gradient instead.
            weight_grad = exact.get(name.removesuffix("bias") + "weight") if name.endswith(".bias") else None
            is_conv_bias = weight_grad is not None and weight_grad.ndim == 3
            size = float((weight_grad if is_conv_bias else want).norm())

            def error(result: dict[str, torch.Tensor], name: str = name, want: torch.Tensor = want,
                      size: float = size) -> float:
                return float((result[name] - want).norm()) / max(size, 1e-30)

            assert error(channels_last) <= 1.5 * error(plain) + floor, (
                f"{name} ({'bf16' if autocast else 'fp32'}): nhwc {error(channels_last):.2e}, plain {error(plain):.2e}")


class ConvolutionLayouts(TorchDispatchMode):
    """Records, for every convolution (forward and backward), whether its input was channels-last."""

    def __init__(self) -> None:
        super().__init__()
        self.channels_last: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
            x = args[1] if func.overloadpacket == torch.ops.aten.convolution_backward else args[0]
            self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last) and x.ndim == 4)
        return func(*args, **(kwargs or {}))


@NHWC_IMPLS
def test_every_convolution_sees_channels_last_inputs(impl: str) -> None:
    """What cuDNN's NHWC kernels need: 4-D channels-last inputs to every conv, forward and backward (the
    plain network's are 3-D, which cuDNN transposes). The NHWC stem is a matrix product, not a conv."""
    layouts = {}
    for name in ("plain", impl):
        model = SampleCNN(n_tags=4, block_impl=name).train()
        with ConvolutionLayouts() as seen:
            model(torch.randn(2, 59049)).sum().backward()
        layouts[name] = seen.channels_last
    assert len(layouts["plain"]) == 2 * 11  # stem, nine blocks, head: forward and backward
    assert len(layouts[impl]) == 2 * 10
    assert all(layouts[impl]) and not any(layouts["plain"])


@pytest.mark.parametrize("pool_first", [False, True])
def test_a_block_gives_channels_last_output_of_the_pooled_length(pool_first: bool) -> None:
    model = SampleCNN(n_tags=4)
    x = nhwc.to_nhwc(torch.randn(2, 128, 81))
    out = nhwc.block(model.blocks[0], x, pool_first)
    assert out.shape == (2, 128, 1, 27) and out.is_contiguous(memory_format=torch.channels_last)


@NHWC_IMPLS
def test_a_training_step_makes_no_host_sync(impl: str) -> None:
    """Fake tensors hold no data: reading a value on the host (e.g. the batch count) raises."""
    with FakeTensorMode():
        model = SampleCNN(n_tags=5, block_impl=impl).train()
        model(torch.randn(2, 59049)).sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_switching_keeps_the_state_dict_and_unknown_impls_are_user_errors() -> None:
    plain, channels_last = SampleCNN(), SampleCNN(block_impl="nhwc")
    assert list(channels_last.state_dict()) == list(plain.state_dict())
    assert sum(p.numel() for p in channels_last.parameters() if p.requires_grad) == 1_869_874
    channels_last.use_block_impl("plain")
    assert channels_last.block_impl == "plain" and all(block.impl == "plain" for block in channels_last.blocks)
    with pytest.raises(UserError, match=r"choose one of \('plain', 'pool_first', 'nhwc', 'pool_first_nhwc', 'auto'\)"):
        SampleCNN(block_impl="channels_last")


@NHWC_IMPLS
def test_compiled_same_as_eager(impl: str) -> None:
    """torch.compile traces the whole NHWC network in one graph (aot_eager: the traced graphs, run eagerly),
    as the suite's compiled fit rows may run it."""
    reference, channels_last = samplecnn_pair(True, torch.device("cpu"), torch.float64, impl)
    compiled = torch.compile(channels_last, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 59049, dtype=torch.float64)
    outputs = []
    for model in (reference, compiled):
        out = model(x)
        out.square().sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-10, atol=1e-12)
    for (name, got), want in zip(channels_last.named_parameters(), reference.parameters(), strict=True):
        scale = float(want.grad.abs().max().clamp_min(1.0))
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-10, atol=1e-10 * scale, msg=name)
