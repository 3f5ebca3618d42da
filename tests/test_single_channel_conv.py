"""The implementations of musicnn's front-end conv compute the same function."""

import pytest
import torch

from lightning_tagging.models import Musicnn
from lightning_tagging.models.single_channel_conv import auto_impl, single_channel_conv2d


@pytest.mark.parametrize("impl", ["mel_windows", "mel_band"])
@pytest.mark.parametrize("kernel", [(38, 7), (67, 7), (1, 128), (1, 32)])
def test_each_formulation_equals_conv2d_with_gradients(impl: str, kernel: tuple[int, int],
                                                       device: torch.device) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 1, 96, 150, dtype=torch.float64, device=device, requires_grad=True)
    weight = torch.randn(5, 1, *kernel, dtype=torch.float64, device=device, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, device=device, requires_grad=True)
    outputs, grads = [], []
    for name in ("conv2d", impl):
        out = single_channel_conv2d(x, weight, bias, name)
        probe = torch.linspace(-1, 1, out.numel(), dtype=torch.float64, device=device).reshape(out.shape)
        (out * probe).sum().backward()
        outputs.append(out.detach())
        grads.append([t.grad.clone() for t in (x, weight, bias)])
        for t in (x, weight, bias):
            t.grad = None
    assert outputs[0].shape == (3, 5, 96 - kernel[0] + 1, 150 - kernel[1] + 1)
    torch.testing.assert_close(outputs[0], outputs[1])
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("impl", ["mel_windows", "mel_band"])
def test_musicnn_same_function_with_each_conv(impl: str) -> None:
    torch.manual_seed(0)
    reference = Musicnn(n_tags=7, width=0.1, conv_impl="conv2d").eval()
    fast = Musicnn(n_tags=7, width=0.1, conv_impl=impl).eval()
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(2, 1, 96, 187)
    torch.testing.assert_close(fast(x), reference(x), atol=1e-4, rtol=1e-4)


def test_unknown_impl() -> None:
    with pytest.raises(ValueError, match="unknown conv implementation"):
        single_channel_conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2), None, "fft")


@pytest.mark.parametrize("impl", ["mel_windows", "mel_band"])
@pytest.mark.parametrize("kernel", [(38, 7), (1, 32)])
def test_each_formulation_under_bf16_autocast_is_as_accurate_as_conv2d(impl: str, kernel: tuple[int, int],
                                                                       device: torch.device) -> None:
    """bf16-mixed: against the float32 result, each formulation is no further off than the library conv."""
    torch.manual_seed(1)
    x = torch.randn(3, 1, 96, 120, device=device)
    weight, bias = torch.randn(6, 1, *kernel, device=device) * 0.1, torch.randn(6, device=device)
    probe = torch.randn(3, 6, 96 - kernel[0] + 1, 120 - kernel[1] + 1, device=device)  # a fixed upstream gradient

    def run(impl: str, autocast: bool) -> list[torch.Tensor]:
        tensors = [t.clone().requires_grad_() for t in (x, weight, bias)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = single_channel_conv2d(*tensors, impl)
        (out.float() * probe).sum().backward()
        return [out.detach().float()] + [t.grad for t in tensors]

    truth = run("conv2d", autocast=False)
    library, windows = run("conv2d", autocast=True), run(impl, autocast=True)
    for name, t, a, b in zip(("out", "x", "weight", "bias"), truth, library, windows, strict=True):
        error_library, error_windows = ((r - t).norm() / t.norm() for r in (a, b))
        assert error_windows <= 1.25 * error_library + 1e-4, f"{name}: {error_windows:.2e} vs {error_library:.2e}"


def test_auto_picks_what_was_measured_faster_on_each_device() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert auto_impl(cuda, tall=True, training=True) == auto_impl(cuda, tall=False, training=False) == "mel_windows"
    assert auto_impl(cpu, tall=True, training=True) == "mel_windows"
    assert auto_impl(cpu, tall=True, training=False) == auto_impl(cpu, tall=False, training=True) == "conv2d"
    assert auto_impl(torch.device("mps"), tall=True, training=True) == "conv2d"
