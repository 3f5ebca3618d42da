"""musicnn's front-end branch as Triton kernels computes what conv → ReLU → BatchNorm2d → amax computes.

As ``test_fused_branch.py`` does for the torch fusion: outputs, gradients of the input, conv
weight and bias and BN γ/β, and BN running statistics against the plain modules, in float64,
float32 and bf16 autocast; ties; a bias that varies over frames (the folded input BN);
evaluation mode; whole models, with the input BN folded and not. On a CPU the kernels run in
Triton's interpreter (slow, so the shapes are small); on a GPU (``scripts/device-bench.sh``)
the same tests run the compiled kernels. Whether the kernels compile for an H100 is checked
here too, without one.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from test_auto_impls import CustomOps
from test_fused_branch import assert_same, backward_weighted, branch_state, make_branch, plain
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from lightning_tagging.compiling import compile_callable
from lightning_tagging.models import Musicnn, fused_branch, triton_branch, triton_kernels
from lightning_tagging.models.fused_branch import fused_conv_relu_bn_max
from lightning_tagging.models.input_bn_fold import folded_bias

H100_SHARED_MEMORY_BYTES = 227 * 1024  # the most one block may use on compute capability 9.0


def run_both(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, device: torch.device, steps: int = 1,
             autocast: bool = False, chunk_elements: int = 10**9,
             bias_map: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """Outputs, gradients and BN buffers (on the CPU) after ``steps`` forward/backward passes on ``device``,
    plain then Triton. ``bias_map`` ``[C, T']``: a bias over output frames, added to the conv's own."""
    results = []
    for fused in (False, True):
        c, b = copy.deepcopy(conv).to(device), copy.deepcopy(bn).to(device)
        xs = x.to(device, copy=True).requires_grad_()
        extra = None if bias_map is None else bias_map.to(device, copy=True).requires_grad_()
        for step in range(steps):
            bias = c.bias if extra is None else c.bias[:, None] + extra
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                if fused:
                    out = fused_conv_relu_bn_max(xs, c.weight, bias, b, chunk_elements, epilogue="triton")
                elif extra is None:
                    out = plain(xs, c, b)
                else:
                    out = b(F.relu(F.conv2d(xs, c.weight) + bias[None, :, None, :])).amax(dim=2)
            backward_weighted(out, step)
        results.append(branch_state(out, xs, c, b))
        if extra is not None:
            results[-1]["bias_map"] = extra.grad.cpu()
    return results


@pytest.mark.parametrize("kernel", [(5, 3), (1, 8)], ids=["timbral", "temporal"])
@pytest.mark.parametrize("chunk_elements", [10**9, 1], ids=["one-chunk", "one-position-chunks"])
def test_float64_same_outputs_gradients_and_running_stats(kernel: tuple[int, int], chunk_elements: int,
                                                          device: torch.device) -> None:
    """γ of both signs and zero; two steps (the second with updated running statistics); the backward's
    chunks of mel positions (the forward takes all at once)."""
    torch.manual_seed(0)
    conv, bn = make_branch(kernel, filters=7, dtype=torch.float64)
    x = torch.randn(2, 1, 12, 20, dtype=torch.float64)
    assert_same(run_both(x, conv, bn, device, steps=2, chunk_elements=chunk_elements), rtol=1e-9, atol=1e-11)


# The two backward paths (``Tiles.save``): the default saves the conv output; this one recomputes it.
RECOMPUTING = dataclasses.replace(triton_kernels.DEFAULT_TILES, save=0)
BACKWARD_PATHS = {"saving": (triton_kernels.DEFAULT_TILES, {"conv_relu_extremes", "conv_weight_grad_saved"}),
                  "recomputing": (RECOMPUTING, {"conv_relu_extremes", "conv_relu_grad", "conv_weight_grad"})}


@pytest.mark.parametrize("path", list(BACKWARD_PATHS))
@pytest.mark.parametrize("kernel", [(5, 3), (1, 8)], ids=["timbral", "temporal"])
@pytest.mark.parametrize("chunk_elements", [10**9, 1], ids=["one-chunk", "one-position-chunks"])
def test_saving_or_recomputing_the_conv_output_computes_the_same_function(path: str, kernel: tuple[int, int],
                                                                          chunk_elements: int,
                                                                          device: torch.device) -> None:
    """``Tiles.save``: the forward keeps relu(conv), and the backward makes the conv's gradient from it in
    the weight gradient's kernel (no grad kernel; the spectrogram's gradient from it too, chunk by
    chunk); or the grad kernel recomputes the conv, chunk by chunk. Float64, a bias map, two steps,
    against the plain modules; and only the kernels of that path run."""
    tiles, kernels = BACKWARD_PATHS[path]
    torch.manual_seed(0)
    conv, bn = make_branch(kernel, filters=7, dtype=torch.float64)
    x = torch.randn(2, 1, 12, 20, dtype=torch.float64)
    bias_map = torch.randn(7, 21 - kernel[1], dtype=torch.float64) * 0.1
    with CustomOps() as seen, triton_kernels.using_tiles(tiles):
        results = run_both(x, conv, bn, device, steps=2, chunk_elements=chunk_elements, bias_map=bias_map)
    assert_same(results, rtol=1e-9, atol=1e-11)
    assert seen.names == kernels


class SaveFlags(TorchDispatchMode):
    """Records the ``save`` argument of every forward kernel launch (``conv_relu_extremes``)."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.overloadpacket is torch.ops.lightning_tagging.conv_relu_extremes:
            self.flags.append(bool(args[-1]))
        return func(*args, **(kwargs or {}))


def test_the_conv_output_is_saved_only_where_a_backward_will_use_it(device: torch.device) -> None:
    """Training mode with the default tiles (``Tiles.save``): saved when the conv's weight needs a gradient;
    not when nothing upstream does (a frozen front-end), nor without autograd; nor with tiles that recompute."""
    conv, bn = make_branch((5, 3), filters=4, dtype=torch.float64)
    conv, bn = conv.to(device), bn.to(device).train()
    x = torch.randn(2, 1, 9, 12, dtype=torch.float64, device=device)
    with SaveFlags() as recorded:
        fused_conv_relu_bn_max(x, conv.weight, conv.bias, bn, epilogue="triton").sum().backward()
        fused_conv_relu_bn_max(x, conv.weight.detach(), conv.bias.detach(), bn, epilogue="triton")
        with torch.no_grad():
            fused_conv_relu_bn_max(x, conv.weight, conv.bias, bn, epilogue="triton")
        with triton_kernels.using_tiles(RECOMPUTING):
            fused_conv_relu_bn_max(x, conv.weight, conv.bias, bn, epilogue="triton").sum().backward()
    assert recorded.flags == [True, False, False, False]


def test_recomputing_the_conv_output_under_bf16_autocast_is_as_accurate_as_plain_bf16(device: torch.device) -> None:
    """As test_bf16_autocast_is_as_accurate_as_plain_bf16 (the default, which saves), recomputing."""
    with triton_kernels.using_tiles(RECOMPUTING):
        test_bf16_autocast_is_as_accurate_as_plain_bf16(device)


def test_exact_ties_split_the_gradient_like_amax(device: torch.device) -> None:
    """Identical mel rows give identical conv outputs at every position: a tie everywhere."""
    torch.manual_seed(1)
    conv, bn = make_branch((3, 5), filters=4, dtype=torch.float64)
    row = torch.randn(2, 1, 1, 24, dtype=torch.float64)
    x = torch.cat([row.expand(2, 1, 8, 24), torch.randn(2, 1, 3, 24, dtype=torch.float64)], dim=2)
    assert_same(run_both(x, conv, bn, device, chunk_elements=2 * 4 * 20 * 3), rtol=1e-9, atol=1e-11)


def test_a_bias_that_varies_over_frames(device: torch.device) -> None:
    """The folded input BN's shift is a bias map [C, T']: added before the ReLU, its gradient summed per frame."""
    torch.manual_seed(2)
    conv, bn = make_branch((4, 3), filters=5, dtype=torch.float64)
    x = torch.randn(2, 1, 10, 18, dtype=torch.float64)
    bias_map = torch.randn(5, 16, dtype=torch.float64)
    reference, fused = run_both(x, conv, bn, device, bias_map=bias_map)
    assert_same([reference, fused], rtol=1e-9, atol=1e-11)


def test_float32_within_tolerance(device: torch.device) -> None:
    """TF32 off (the device fixture): fp32 arithmetic on both sides, summed in different orders."""
    torch.manual_seed(3)
    conv, bn = make_branch((7, 3), filters=16, dtype=torch.float32)
    x = torch.randn(3, 1, 20, 40)
    assert_same(run_both(x, conv, bn, device, chunk_elements=3 * 16 * 38 * 5), rtol=1e-4, atol=1e-5)


def test_bf16_autocast_is_as_accurate_as_plain_bf16(device: torch.device) -> None:
    """Both convolve in bf16 under autocast; against the float32 result the kernels must be within 1.5×
    the plain bf16 path's error (as test_fused_branch requires of the torch fusion)."""
    torch.manual_seed(4)
    conv, bn = make_branch((7, 3), filters=16, dtype=torch.float32)
    with torch.no_grad():
        bn.weight[5] = 0.7  # no γ = 0 here: bf16 ties in the plain BN output would split differently
    x = torch.randn(3, 1, 20, 40)
    truth, _ = run_both(x, conv, bn, device)
    plain_bf16, fused_bf16 = run_both(x, conv, bn, device, autocast=True)

    def error(result: dict[str, torch.Tensor], name: str) -> float:
        return float((result[name].double() - truth[name].double()).norm() / truth[name].double().norm())

    for name in truth:
        assert error(fused_bf16, name) <= 1.5 * error(plain_bf16, name) + 1e-4, (
            f"{name}: Triton bf16 {error(fused_bf16, name):.2e} vs plain bf16 {error(plain_bf16, name):.2e}")


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_evaluation_mode_uses_running_stats(grad: bool, device: torch.device) -> None:
    """Without a gradient the forward kernel pools the extreme the running scale's sign asks for; with one
    (a saliency map, say) the branch runs library ops."""
    torch.manual_seed(5)
    conv, bn = make_branch((5, 3), filters=6, dtype=torch.float64)
    with torch.no_grad():
        bn.running_mean.uniform_(0, 1)
        bn.running_var.uniform_(0.5, 2)
    conv, bn = conv.to(device), bn.eval().to(device)
    x = torch.randn(2, 1, 14, 16, dtype=torch.float64, device=device)
    with torch.set_grad_enabled(grad):
        fused = fused_conv_relu_bn_max(x, conv.weight, conv.bias, bn, epilogue="triton")
        torch.testing.assert_close(fused, plain(x, conv, bn), rtol=1e-9, atol=1e-11)
    assert fused.requires_grad == grad


@pytest.mark.parametrize("spectrogram_grad", [False, True], ids=["input-bn-folded", "spectrogram-gradient"])
def test_whole_musicnn_same_function(spectrogram_grad: bool, device: torch.device) -> None:
    """A training step of the whole model, float64, against library convs without the fold. With a fixed
    front-end the input BN folds into the kernels' weights and bias map; when the spectrogram needs its
    gradient (log_learn) it does not, and the backward adds the library's transposed conv. (The
    default tiles: the conv output saved; the recompute path is tested branch by branch above.)"""
    torch.manual_seed(6)
    reference = Musicnn(n_tags=5, n_mels=16, width=0.2, dropout=0.0, conv_impl="conv2d", fold_input_bn=False)
    fused = Musicnn(n_tags=5, n_mels=16, width=0.2, dropout=0.0, conv_impl="fused_triton")
    reference, fused = reference.double().to(device), fused.double().to(device)
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(2, 1, 16, 40, dtype=torch.float64, device=device)
    inputs = []
    for model in (reference, fused):
        inputs.append(x.clone().requires_grad_(spectrogram_grad))
        model(inputs[-1]).square().sum().backward()
    for (name, p_fused), p_ref in zip(fused.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p_fused.grad, p_ref.grad, rtol=1e-8, atol=1e-9, msg=name)
    for (name, b_fused), b_ref in zip(fused.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(b_fused, b_ref, rtol=1e-9, atol=1e-12, msg=name)
    if spectrogram_grad:
        torch.testing.assert_close(inputs[1].grad, inputs[0].grad, rtol=1e-8, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(fused.eval()(x), reference.eval()(x), rtol=1e-9, atol=1e-9)


def test_the_folded_input_bn_is_as_accurate_under_bf16_autocast(device: torch.device) -> None:
    """The kernels add the folded shift (a bias map) in float32, before rounding to bf16, so musicnn keeps
    the input BN folded under autocast with them (not with library convs). One branch after an input BN's
    γ, β: against float32, the folded bf16 outputs and gradients (γ and β's included) must be within 2.5× the
    larger error of the bf16 paths that do not fold: library convs, and the kernels on the spectrogram γ·x̂ + β.
    Seeds 8–11 on a CPU: ratios 0.05–1.93, about 1 in the middle; the largest, γ's gradient at seed 8
    (8.6e-3 against 4.5e-3; bf16's relative step is 3.9e-3), as x̂ is rounded to bf16 where the unfolded
    kernels see γ·x̂ + β rounded instead."""
    torch.manual_seed(8)
    conv, bn = make_branch((7, 3), filters=16, dtype=torch.float32)
    with torch.no_grad():
        bn.weight[5] = 0.7  # no γ = 0 (see test_bf16_autocast_is_as_accurate_as_plain_bf16)
    normalized, padding = torch.randn(3, 1, 20, 40), (3, 3)

    def step(kind: str, autocast: bool) -> dict[str, torch.Tensor]:
        c, b = copy.deepcopy(conv).to(device), copy.deepcopy(bn).to(device)
        scale = torch.tensor(1.3, device=device, requires_grad=True)
        shift = torch.tensor(-0.4, device=device, requires_grad=True)
        x = normalized.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            spectrogram = F.pad(scale * x + shift, padding)
            if kind == "library":
                out = plain(spectrogram, c, b)
            elif kind == "unfolded":
                out = fused_conv_relu_bn_max(spectrogram, c.weight, c.bias, b, epilogue="triton")
            else:
                bias_map = folded_bias(c, shift, x.shape[-1], padding)
                out = fused_conv_relu_bn_max(F.pad(x, padding), c.weight * scale, bias_map, b, epilogue="triton")
        weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64, device=device).reshape(out.shape)
        (out.double() * weights).sum().backward()
        found = {"out": out, "scale": scale.grad, "shift": shift.grad, "weight": c.weight.grad, "bias": c.bias.grad,
                 "gamma": b.weight.grad, "beta": b.bias.grad}
        return {name: value.detach().double().cpu() for name, value in found.items()}

    truth = step("library", autocast=False)
    library, unfolded, folded = (step(kind, autocast=True) for kind in ("library", "unfolded", "folded"))
    for name, value in truth.items():
        def error(result: dict[str, torch.Tensor], name: str = name, value: torch.Tensor = value) -> float:
            return float((result[name] - value).norm() / value.norm())

        assert error(folded) <= 2.5 * max(error(library), error(unfolded)) + 1e-4, (
            f"{name}: folded {error(folded):.2e}, library {error(library):.2e}, unfolded {error(unfolded):.2e}")


def test_musicnn_folds_the_input_bn_under_autocast_only_when_every_branch_is_triton() -> None:
    model = Musicnn(n_tags=5, n_mels=16, width=0.2, conv_impl="fused_triton").train()
    branches = (model.timbral_f74, model.timbral_f77, model.temporal_s1, model.temporal_s2, model.temporal_s3)
    x = torch.randn(2, 1, 16, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model._folds_input_bn(x, branches)
        model.timbral_f77.conv_impl = "mel_windows"
        assert not model._folds_input_bn(x, branches)
    assert model._folds_input_bn(x, branches)  # without autocast, library convs fold too


def test_a_recomputed_conv_that_differs_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for a kernel whose recompute in backward is not bit-identical: its bias is off by 1e-3."""
    monkeypatch.setattr(fused_branch, "_RECOMPUTE_CHECK", fused_branch._SampledCheck(first=1))
    monkeypatch.setattr(triton_kernels, "_tiles_in_use", [RECOMPUTING])
    grad_of_conv = triton_branch.grad_of_conv

    def drifting(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *args: object) -> object:
        return grad_of_conv(x, weight, bias + 1e-3, *args)

    monkeypatch.setattr(triton_branch, "grad_of_conv", drifting)
    conv, bn = make_branch((5, 3), filters=4, dtype=torch.float64)
    out = fused_conv_relu_bn_max(torch.randn(2, 1, 12, 16, dtype=torch.float64), conv.weight, conv.bias, bn,
                                 epilogue="triton")
    with pytest.raises(RuntimeError, match="recomputed in backward differs"):
        out.sum().backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_the_kernels_compile_for_an_h100_after_interpreted_runs(dtype: torch.dtype) -> None:
    """Down to machine code for compute capability 9.0, within its shared memory, on a machine without a GPU;
    after a CPU launch in the interpreter, which must leave triton.language as it found it. The training
    dtypes spill (next to) no registers: bf16 none, fp32 with TF32 at most 64 bytes per thread (0 and 64,
    for 7 and 128 frames, with the default tiles); spills go to local memory, which would slow the kernels."""
    conv, bn = make_branch((3, 3), filters=4, dtype=torch.float64)
    fused_conv_relu_bn_max(torch.randn(2, 1, 6, 8, dtype=torch.float64), conv.weight, conv.bias, bn,
                           epilogue="triton").sum().backward()
    spill_limit = {torch.bfloat16: 0, torch.float32: 64}
    for tf32 in ([True, False] if dtype == torch.float32 else [True]):
        for width in (7, 128):  # frames of the timbral kernels and of the longest temporal one
            for kernel, found in triton_kernels.compile_for_gpu(dtype, arch=90, kernel_width=width, tf32=tf32).items():
                assert 0 < found["shared_bytes"] <= H100_SHARED_MEMORY_BYTES, (kernel, found)
                if tf32 and dtype in spill_limit:
                    assert found["spill_bytes"] <= spill_limit[dtype], (kernel, width, found)


def test_a_bias_map_of_the_wrong_shape_is_a_clear_error() -> None:
    conv, bn = make_branch((3, 3), filters=4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"bias map must be \[C, T'\] = \[4, 6\]"):
        fused_conv_relu_bn_max(torch.randn(2, 1, 6, 8, dtype=torch.float64), conv.weight,
                               torch.zeros(4, 5, dtype=torch.float64), bn, epilogue="triton")


@pytest.mark.parametrize("path", list(BACKWARD_PATHS))
def test_flop_counters_see_the_kernels_on_fake_tensors(path: str) -> None:
    """Each kernel is a torch op with a FLOP formula: on fake tensors (nothing runs) a training step counts the
    front-end convs' forward FLOPs once per kernel: the forward and the weight gradient, and when
    recomputing, the recompute in backward (no spectrogram gradient: the input BN is folded)."""
    tiles, kernels = BACKWARD_PATHS[path]
    with FakeTensorMode(), fused_branch.recompute_checks_paused(), triton_kernels.using_tiles(tiles):
        model = Musicnn(n_tags=5, conv_impl="fused_triton").train()
        x = torch.randn(4, 1, 96, 187)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x).sum().backward()
        branches = (model.timbral_f74, model.timbral_f77, model.temporal_s1, model.temporal_s2, model.temporal_s3)
        forward = FlopCounterMode(display=False)
        with forward, torch.no_grad():
            for branch in branches:
                branch.conv(F.pad(x, branch.time_padding))
    counts = counter.get_flop_counts()["Global"]
    ops = torch.ops.lightning_tagging
    assert forward.get_total_flops() > 10**9
    assert {str(op).removeprefix("lightning_tagging.") for op in counts if str(op).startswith("lightning_tagging.")} \
        == kernels
    for name in kernels:
        assert counts[getattr(ops, name)] == forward.get_total_flops(), name


def test_a_compiled_musicnn_with_fused_triton_trains_like_the_eager_one(device: torch.device) -> None:
    """torch.compile of the whole model sees the kernels as opaque ops inside the fused branch's autograd
    Function: one training step, compiled against eager, same logits and gradients. On a CPU the backend
    is aot_eager (dynamo and AOTAutograd trace it; the interpreter runs the kernels, and inductor's C++
    would add minutes); on a GPU (device-bench.sh) inductor, as ``model.compile: true`` uses.

    In float64, so that any difference is a fault. In fp32, inductor's fused code computes the folded
    bias and the BatchNorm terms in other last bits than eager; where a conv output sits within those
    bits of zero, ReLU's gate and the max over mel send its gradient elsewhere, which moves a weight
    gradient by a whole window of inputs (on an H200 the fp32 gradients of timbral_f74's weights
    differed beyond rtol 1e-4, TF32 off, 2026-11-26; in float64 they matched).

    With the default tiles, which save the conv output for backward: traced by dynamo, that backward
    got zeros for its output's gradient, so every front-end gradient was zero; the fused branches
    now run between the compiled graphs, whichever the backward path (``fused_branch._apply_untraced``)."""
    torch._dynamo.reset()
    torch.manual_seed(9)
    eager = Musicnn(n_tags=5, n_mels=16, n_frames=24, width=0.05, dropout=0.0, conv_impl="fused_triton")
    eager = eager.to(device, torch.float64)
    compiled_module = copy.deepcopy(eager)
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    compiled = compile_callable(compiled_module, device.type, backend=backend)
    x = torch.randn(2, 1, 16, 24, device=device, dtype=torch.float64)
    logits = []
    for model in (eager, compiled):
        logits.append(model(x))
        logits[-1].square().sum().backward()
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-10, atol=1e-12)
    for (name, p_compiled), p_eager in zip(compiled_module.named_parameters(), eager.parameters(), strict=True):
        difference = (p_compiled.grad - p_eager.grad).abs().max().item()
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=1e-9, atol=1e-12,
                                   msg=lambda default, name=name, difference=difference:
                                   f"{name}: largest difference {difference:.3g}; {default}")
