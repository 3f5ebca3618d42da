"""saved_activation_bytes counts what autograd keeps for backward, checked against hand-computed sizes."""

from __future__ import annotations

import torch

from lightning_tagging.bench.memory import saved_activation_bytes

FLOAT32 = 4  # bytes


def test_a_linear_layer_saves_its_input_and_weight() -> None:
    layer = torch.nn.Linear(8, 3)
    x = torch.randn(4, 8, requires_grad=True)  # inside a network, a layer's input needs a gradient
    # y = x Wᵀ + b saves x (for dL/dW) and Wᵀ, a view of W (for dL/dx); b's gradient needs nothing.
    assert saved_activation_bytes(lambda: layer(x)) == (4 * 8 + 3 * 8) * FLOAT32
    assert saved_activation_bytes(lambda: layer(x), exclude=layer.parameters()) == 4 * 8 * FLOAT32


def test_views_of_one_storage_count_once_and_new_storages_count() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    # sin saves x; cos saves x.t(), a view of the same storage: 4 × 8 floats in all.
    assert saved_activation_bytes(lambda: x.sin().sum() + x.t().cos().sum()) == 4 * 8 * FLOAT32
    # exp saves its result, a new [4, 8] tensor.
    assert saved_activation_bytes(lambda: x.sin().sum() + x.exp().sum()) == 2 * 4 * 8 * FLOAT32
    # A slice keeps its whole base alive, so the base's storage is what counts.
    assert saved_activation_bytes(lambda: x[:1].sin().sum()) == 4 * 8 * FLOAT32


def test_nothing_is_saved_without_grad() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    with torch.no_grad():
        assert saved_activation_bytes(lambda: x.sin()) == 0


def test_the_counted_graph_is_freed_when_its_result_is_dropped() -> None:
    """exp saves its own result: had the count kept that tensor as itself, node → saved result → grad_fn →
    node would be a cycle inside autograd that Python's collector cannot see (one musicnn's graph per
    `lt bench` row stayed on the GPU). No collector run here: reference counting alone must free it."""
    import weakref

    x = torch.randn(4, 8, requires_grad=True)
    results: list[weakref.ref[torch.Tensor]] = []

    def forward() -> torch.Tensor:
        y = x.exp()
        results.append(weakref.ref(y))
        return y.sum()

    assert saved_activation_bytes(forward) == 4 * 8 * FLOAT32
    assert results[0]() is None
