"""musicnn: musically motivated CNNs on log-mel spectrograms.

Pons & Serra, "musicnn: Pre-trained convolutional neural networks for music audio
tagging", ISMIR 2019 LBD; architecture from Pons, Nieto, Prockup, Schmidt, Ehmann & Serra,
"End-to-end learning for music audio tagging at scale", ISMIR 2018.

Shape-for-shape compatible with the TensorFlow checkpoints of the ``musicnn`` PyPI package
(``MTT_musicnn``, ``MSD_musicnn``: :class:`Musicnn`; ``MSD_musicnn_big``: :class:`MusicnnBig`).

TF → torch mapping. TF tensors are NHWC ``[batch, time, mel, ch]``; here convolutions see
``[B, C, mel, time]``, so every 2-D kernel is (mel, time). TF variables, in creation order
(``batch_normalization``, ``conv2d``, ``batch_normalization_1``, ``conv2d_1``, … — check
the shapes against the checkpoint when importing):

====================  ==============================  =====================================
this module           TF variable (kernel shape)      torch weight from TF kernel ``k``
====================  ==============================  =====================================
input_bn              batch_normalization (1 ch)      gamma/beta/moving_mean/moving_variance
                                                      → weight/bias/running_mean/running_var
timbral_f74.conv      conv2d   [7, 38, 1, 204]        ``k.permute(3, 2, 1, 0)`` → [204, 1, 38, 7]
timbral_f77.conv      conv2d_1 [7, 67, 1, 204]        same
temporal_s1.conv      conv2d_2 [128, 1, 1, 51]        same → [51, 1, 1, 128]
temporal_s2.conv      conv2d_3 [64, 1, 1, 51]         same
temporal_s3.conv      conv2d_4 [32, 1, 1, 51]         same
midend_conv1.conv     conv2d_5 [7, 561, 1, F]         ``k[:, :, 0, :].permute(2, 1, 0)`` → [F, 561, 7]
midend_conv2.conv     conv2d_6 [7, F, 1, F]           same → [F, F, 7]
midend_conv3.conv     conv2d_7 [7, F, 1, F]           same
pool_bn               batch_normalization_9 (2·753)   as input_bn
dense                 dense   [1506, U]               ``k.T`` → [U, 1506]
dense_bn              batch_normalization_10 (U)      as input_bn
classifier            dense_1 [U, n_tags]             ``k.T``
====================  ==============================  =====================================

Each ``*.bn`` follows its conv (``batch_normalization_{1..8}``). TF's mid-end convs are 2-D
convs with one input channel whose kernel spans all feature channels; a Conv1d over those
channels is the same operation. The back-end's TF ``flatten`` of ``concat([max, mean], 2)``
on ``[B, 753, 1]`` tensors interleaves the two pools (``[max_0, mean_0, max_1, mean_1, …]``);
we keep that order so ``pool_bn`` and ``dense`` load without permutation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lightning_tagging.errors import UserError

from . import triton_kernels
from .base import Backbone, check_spectrogram
from .fused_branch import conv_relu_bn_max_over_mel, fused_conv_relu_bn_max
from .input_bn_fold import batch_normalized, folded_bias, folded_conv
from .single_channel_conv import IMPLEMENTATIONS, single_channel_conv2d

# TF's batch-norm defaults: epsilon 0.001, moving-average momentum 0.99 (torch: 1 - 0.99).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# How the front-end branches run: the conv implementations of single_channel_conv, or "fused"
# (conv → ReLU → BN → max over mel without the full conv output; models/fused_branch.py), or
# "fused_compiled" (the same with each chunk's elementwise work fused by torch.compile), or
# "fused_triton" (the conv inside the fusion: Triton kernels, models/triton_branch.py).
FUSED_IMPLS = ("fused", "fused_compiled", "fused_triton")
# The front-end's branches, in the order their outputs are concatenated.
FRONTEND_BRANCHES = ("timbral_f74", "timbral_f77", "temporal_s1", "temporal_s2", "temporal_s3")
BRANCH_IMPLS = (*IMPLEMENTATIONS, *FUSED_IMPLS)
# "auto" trains the front-end with the Triton kernels from this many clips per batch, by the
# precision of its convs, on the GPUs they were timed on (compute capability 9.0: H100, H200).
FUSED_TRITON_MIN_BATCH = {"bf16": 32, "fp32": 64}
FUSED_TRITON_MIN_CAPABILITY = (9, 0)


def auto_branch_impl(x: torch.Tensor, training: bool) -> str:
    """What a front-end branch with ``conv_impl="auto"`` runs for spectrograms ``x`` ``[B, 1, F, T]``:
    ``"fused_triton"`` where it trains faster, else ``"auto"`` (``single_channel_conv.auto_impl``'s conv).

    Training clips/s of the whole musicnn on an H200 (2026-11-26, ``lt bench model``; README,
    Performance), mel_windows → fused_triton:

    ======  ===================  ===================
    batch   fp32                 bf16-mixed
    ======  ===================  ===================
    16      1,189 → 760          1,093 → 802
    32      1,908 → 1,488        1,349 → 1,486
    64      644 → 688            1,438 → 2,715
    128     758 → 822            1,506 → 2,937
    256     2,060 → 2,606        1,518 → 3,162
    ======  ===================  ===================

    (fp32 at 64 and 128 is slow with every implementation, and takes 20–49 GiB: cuDNN's choice of
    algorithms at those shapes.) These rows ran the kernels' first tiles; with the default tiles
    (``triton_kernels.DEFAULT_TILES``) fused_triton trained at 8,143 clips/s at batch 256 in bf16
    (smaller batches not yet timed). Inference stays with the convs: at batch 32 they ran 7,491
    clips/s in bf16 against fused_triton's 3,880 with the first tiles, and within ±15 % of it at
    larger batches; with the default tiles fused_triton inferred 19,925 clips/s at batch 256 in bf16
    (mel_windows 9,536 in an earlier run), so inference may switch too once smaller batches are timed.

    Under ``model.compile`` too, the kernels running between the compiled graphs: end to end at
    batch 256 in bf16, 8,062 clips/s, against 2,759 for compiled mel_windows convs (H200).
    """
    if not (training and torch.is_grad_enabled() and x.is_cuda and triton_kernels.available()):
        return "auto"
    if torch.cuda.get_device_capability(x.device) < FUSED_TRITON_MIN_CAPABILITY:
        return "auto"  # (not timed, nor tested, on older GPUs)
    low_precision = torch.is_autocast_enabled("cuda") or x.dtype in (torch.bfloat16, torch.float16)
    return "fused_triton" if x.shape[0] >= FUSED_TRITON_MIN_BATCH["bf16" if low_precision else "fp32"] else "auto"


def _scaled(n: float, width: float) -> int:
    return max(1, round(n * width))


def max_over(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.amax(dim)``, with a backward that stays finite under torch.compile in bf16.

    Eager, this is ``amax``: where several positions share the max, they share its gradient
    (what ``fused_branch`` reproduces). Under torch.compile it is ``max(dim).values``, whose
    backward sends the gradient to one arg-max index: the same values, and the same gradient
    wherever the max is unique. torch 2.11's inductor turns BatchNorm → ``amax`` in bf16 into a
    backward that compares a recomputed float32 input with the bf16-rounded max, finds no equal
    element and divides by that count of zero: NaN gradients (seen on CPU;
    ``tests/test_compiling.py`` trains compiled bf16 musicnn and checks its gradients).
    """
    if torch.compiler.is_compiling():
        return x.max(dim=dim).values
    return x.amax(dim=dim)


def tf_same_padding(kernel: int) -> tuple[int, int]:
    """Zero padding (before, after) of TF's "same" for a stride-1 kernel: the odd one goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


class _FrontendBranch(nn.Module):
    """time zero-pad → conv → ReLU → BN → max over all mel bands: ``[B, 1, F, T]`` → ``[B, filters, T]``.

    The mel axis is never padded: the max over all remaining bands follows, so a "valid"
    conv in frequency loses nothing but compute.
    """

    def __init__(
        self, filters: int, kernel: tuple[int, int], time_padding: tuple[int, int], conv_impl: str = "auto"
    ) -> None:
        super().__init__()
        self.time_padding = time_padding
        self.conv_impl = conv_impl
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor, input_affine: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``input_affine``: the input BN's (γ, β) when ``x`` is the spectrogram normalised without them
        (``input_bn_fold.py``; not for "fused" and "fused_compiled")."""
        conv_impl = self.resolved_impl(x)
        if conv_impl == "fused_triton":
            weight, bias = self.conv.weight, self.conv.bias
            if input_affine is not None:
                scale, shift = input_affine
                weight, bias = weight * scale, folded_bias(self.conv, shift, x.shape[-1], self.time_padding)
            return fused_conv_relu_bn_max(F.pad(x, self.time_padding), weight, bias, self.bn, epilogue="triton")
        if input_affine is not None:
            conv = folded_conv(x, self.conv, *input_affine, self.time_padding, conv_impl)
            return max_over(self.bn(F.relu(conv)), dim=2)
        x = F.pad(x, self.time_padding)  # pads the last (time) axis only
        if conv_impl in FUSED_IMPLS:
            compiled = conv_impl == "fused_compiled"
            return conv_relu_bn_max_over_mel(x, self.conv, self.bn, compile_epilogues=compiled)
        conv = single_channel_conv2d(x, self.conv.weight, self.conv.bias, conv_impl)
        return max_over(self.bn(F.relu(conv)), dim=2)

    def resolved_impl(self, x: torch.Tensor) -> str:
        """The implementation that runs for ``x``: ``conv_impl``, or for "auto" :func:`auto_branch_impl`'s."""
        return auto_branch_impl(x, self.training) if self.conv_impl == "auto" else self.conv_impl


class _MidendLayer(nn.Module):
    """conv over time (width 7, zero-padded 3 both sides) → ReLU → BN: ``[B, C, T]`` → ``[B, F, T]``."""

    def __init__(self, c_in: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, filters, kernel_size=7, padding=3)
        self.bn = nn.BatchNorm1d(filters, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Musicnn(Backbone):
    """musicnn (Pons & Serra 2019; Pons et al., ISMIR 2018).

    Input ``[B, 1, n_mels, T]`` log-mel patches (``T = n_frames`` in training; the network
    is fully convolutional with global pooling, so other lengths also work) → logits
    ``[B, n_tags]``.

    - Front-end (musically motivated): input BN; two timbral branches, kernels
      7 time × ⌊0.4·n_mels⌋ and 7 × ⌊0.7·n_mels⌋ mel, time zero-padded by 3, no mel padding;
      three temporal branches, kernels 128, 64, 32 time × 1 mel with TF "same" padding
      (even kernels: (k-1)//2 before, the rest after, as torch's ``padding="same"``
      would also do; explicit here to avoid its hidden copy and warning). Each: ReLU,
      BN, max over mel. Concatenated → ``[B, 561, T]``.
    - Mid-end: three width-7 convs of ``midend_filters`` (ReLU, BN) with residual adds;
      dense concat [front-end, c1, c1+c2, c1+c2+c3] → ``[B, 753, T]``.
    - Back-end: max and mean over time (interleaved, TF order) → 1506; BN; dropout;
      dense ``dense_units`` + ReLU; BN (= :meth:`embed`, musicnn's "penultimate");
      dropout; dense ``n_tags``.

    787,159 trainable parameters at 50 tags with the defaults.

    Args:
        n_tags: number of output logits.
        n_mels: mel bands of the input.
        n_frames: frames of a training patch (``input_length``); 187 ≈ 3 s at hop 256.
        width: multiplies front-end filters, ``midend_filters`` and ``dense_units``
            (Pons et al. 2018 scale models ×1/2, ×2, ×4); <1 gives small CPU models.
        midend_filters: filters of each mid-end conv.
        dense_units: units of the penultimate dense layer.
        dropout: dropout probability before each dense layer.
        conv_impl: how the front-end branches run; same weights, same function:
            ``"auto"`` (the fastest where measured: :func:`auto_branch_impl`, then
            ``single_channel_conv.auto_impl``), ``"conv2d"``, ``"mel_windows"`` or ``"mel_band"``
            (``models/single_channel_conv.py``),
            or ``"fused"``: conv → ReLU → BN → max over mel in chunks, without writing the
            ``[B, filters, mel, T]`` conv output (``models/fused_branch.py``), or
            ``"fused_compiled"``: the same with each chunk's elementwise work and reductions
            fused by ``torch.compile`` (compiles on the first training step), or
            ``"fused_triton"``: the conv itself inside the fusion, Triton kernels for a GPU
            (``models/triton_branch.py``; on a CPU they run in Triton's interpreter, for tests only).
        fold_input_bn: in training with a fixed front-end, apply the input BN's learned scale
            and shift to the front-end convs' weights and biases instead of the spectrogram, so
            the spectrogram's gradient (a slow one-channel conv backward) is never computed.
            Same function (``models/input_bn_fold.py``); off is the plain formulation.
    """

    input_kind = "spectrogram"
    plain_args: ClassVar[dict[str, object]] = {"conv_impl": "conv2d", "fold_input_bn": False}

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 96,
        n_frames: int = 187,
        width: float = 1.0,
        midend_filters: int = 64,
        dense_units: int = 200,
        dropout: float = 0.5,
        conv_impl: str = "auto",
        fold_input_bn: bool = True,
    ) -> None:
        super().__init__()
        self.fold_input_bn = fold_input_bn
        self.n_tags = n_tags
        self.n_mels = n_mels
        self.input_length = n_frames
        # int() truncation as in the TF code: int(1.6 * 128) = 204, int(1.6 * 32) = 51.
        timbral = max(1, int(1.6 * 128 * width))
        temporal = max(1, int(1.6 * 32 * width))
        midend = _scaled(midend_filters, width)
        units = _scaled(dense_units, width)
        short, tall = int(0.4 * n_mels), int(0.7 * n_mels)
        if short < 1:
            raise UserError(
                f"Musicnn needs n_mels ≥ 3 (timbral kernel of int(0.4·n_mels) bands), got {n_mels}"
            )

        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS, momentum=BN_MOMENTUM)
        # TF pads the input by 3 frames on both sides once for both timbral branches, and
        # uses "same" padding for the temporal ones.
        self.timbral_f74 = _FrontendBranch(timbral, (short, 7), time_padding=(3, 3), conv_impl=conv_impl)
        self.timbral_f77 = _FrontendBranch(timbral, (tall, 7), time_padding=(3, 3), conv_impl=conv_impl)
        self.temporal_s1 = _FrontendBranch(temporal, (1, 128), time_padding=tf_same_padding(128), conv_impl=conv_impl)
        self.temporal_s2 = _FrontendBranch(temporal, (1, 64), time_padding=tf_same_padding(64), conv_impl=conv_impl)
        self.temporal_s3 = _FrontendBranch(temporal, (1, 32), time_padding=tf_same_padding(32), conv_impl=conv_impl)
        frontend_channels = 2 * timbral + 3 * temporal  # 561

        self.midend_conv1 = _MidendLayer(frontend_channels, midend)
        self.midend_conv2 = _MidendLayer(midend, midend)
        self.midend_conv3 = _MidendLayer(midend, midend)
        features = frontend_channels + 3 * midend  # 753

        self.pool_bn = nn.BatchNorm1d(2 * features, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.pool_dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * features, units)
        self.dense_bn = nn.BatchNorm1d(units, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.dense_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(units, n_tags)
        self.use_conv_impl(conv_impl)

    def use_conv_impl(self, conv_impl: str) -> None:
        """Switch how the front-end branches run (see ``conv_impl``); weights and function are unchanged."""
        if conv_impl not in BRANCH_IMPLS:
            raise UserError(f"unknown musicnn conv_impl {conv_impl!r}; choose one of {BRANCH_IMPLS}")
        for branch in self.modules():
            if isinstance(branch, _FrontendBranch):
                branch.conv_impl = conv_impl

    def _folds_input_bn(self, x: torch.Tensor, branches: tuple[_FrontendBranch, ...]) -> bool:
        """Whether to fold the input BN's γ, β into the front-end convs (``input_bn_fold.py``): when a
        gradient is wanted for them but not for the spectrogram, no branch runs "fused" or
        "fused_compiled", and no autocast runs the convs in bf16 (the folded conv output and the edge
        term would each be rounded to bf16 before they are added: in a test the logits were 2.4×
        further from float64 than the plain bf16 model's) unless every branch is "fused_triton",
        whose kernels add the edge term in the float32 accumulator, before rounding."""
        bn = self.input_bn
        impls = {branch.resolved_impl(x) for branch in branches}
        return (
            self.fold_input_bn
            and torch.is_grad_enabled()
            and (not torch.is_autocast_enabled(x.device.type) or impls == {"fused_triton"})
            and not x.requires_grad
            and bn.affine
            and (bn.weight.requires_grad or bn.bias.requires_grad)
            and not impls & {"fused", "fused_compiled"}
        )

    def frontend_branches(self, x: torch.Tensor, names: Sequence[str] = FRONTEND_BRANCHES) -> list[torch.Tensor]:
        """The input BN and the front-end branches ``names`` (by default all five: most of musicnn's FLOPs).

        Spectrograms ``[B, 1, n_mels, T]`` → each named branch's output ``[B, filters, T]``, in order.
        """
        check_spectrogram(x, self.n_mels, None, type(self).__name__)
        branches = tuple(getattr(self, name) for name in names)
        if self._folds_input_bn(x, branches):  # the same function, without the spectrogram's gradient
            x = batch_normalized(self.input_bn, x)
            return [branch(x, (self.input_bn.weight, self.input_bn.bias)) for branch in branches]
        x = self.input_bn(x)
        return [branch(x) for branch in branches]

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All of musicnn's named intermediate features for spectrograms ``[B, 1, n_mels, T]``.

        Returns ``timbral`` ``[B, 408, T]``, ``temporal`` ``[B, 153, T]``, ``cnn1``/``cnn2``/``cnn3``
        ``[B, midend_filters, T]`` (after the residual adds), ``max_pool``/``mean_pool``
        ``[B, 753]``, ``penultimate`` ``[B, dense_units]`` and ``logits`` ``[B, n_tags]``.
        """
        outputs = self.frontend_branches(x)
        timbral = torch.cat(outputs[:2], dim=1)
        temporal = torch.cat(outputs[2:], dim=1)
        frontend = torch.cat([timbral, temporal], dim=1)  # [B, 561, T]

        c1 = self.midend_conv1(frontend)
        r2 = self.midend_conv2(c1) + c1
        r3 = self.midend_conv3(r2) + r2
        dense_concat = torch.cat([frontend, c1, r2, r3], dim=1)  # [B, 753, T]

        max_pool = max_over(dense_concat, dim=2)
        mean_pool = dense_concat.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # interleaved, as TF flattens
        hidden = self.dense(self.pool_dropout(self.pool_bn(pooled)))
        penultimate = self.dense_bn(F.relu(hidden))
        logits = self.classifier(self.dense_dropout(penultimate))
        return {
            "timbral": timbral,
            "temporal": temporal,
            "cnn1": c1,
            "cnn2": r2,
            "cnn3": r3,
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "penultimate": penultimate,
            "logits": logits,
        }

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, dense_units]`` (BN output of the dense layer)."""
        return self.features(x)["penultimate"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_tags]`` of spectrograms ``[B, 1, n_mels, T]``."""
        return self.features(x)["logits"]


class MusicnnBig(Musicnn):
    """The large musicnn of the ``musicnn`` package (``MSD_musicnn_big``): 512 mid-end filters,
    500 dense units; 7,980,235 trainable parameters at 50 tags. Otherwise as :class:`Musicnn`."""

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 96,
        n_frames: int = 187,
        width: float = 1.0,
        midend_filters: int = 512,
        dense_units: int = 500,
        dropout: float = 0.5,
        conv_impl: str = "auto",
        fold_input_bn: bool = True,
    ) -> None:
        super().__init__(n_tags, n_mels, n_frames, width, midend_filters, dense_units, dropout, conv_impl,
                         fold_input_bn)
