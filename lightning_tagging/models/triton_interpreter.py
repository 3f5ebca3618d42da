"""Launch a Triton kernel on a GPU, or on CPU tensors in Triton's interpreter.

Triton interprets kernels (numpy, one program after another) only when ``TRITON_INTERPRET=1``
is set before it is imported: a process-wide switch that would also interpret every GPU kernel.
:func:`launch` instead interprets a kernel when its first argument is on the CPU, which is how
the tests run our kernels on machines without a GPU. Hundreds of times slower than library ops
on the same CPU (a training step of musicnn ×0.1 at batch 2: 548 s against 0.9 s with library
convs, `lt bench model`): for tests only, and it says so once.

Three of the interpreter's flaws in Triton 3.6 are worked around here or in the kernels:

1. An interpreted kernel cannot call other ``@triton.jit`` functions (ours, or triton.language's
   own such as ``tl.sum``) unless the switch was set. While a CPU launch runs, such a call runs
   the function as the interpreter would. The language the function calls is the interpreter's
   already, because a launch patches the language modules its kernel's globals name (and
   restores them after): a kernel's module must import ``triton.language`` and
   ``triton.language.core`` (what triton.language's functions call) as globals.
2. Loop bounds: the interpreter turns a scalar into an integer with ``int()`` of a one-element
   array, which numpy ≥ 2.4 refuses.
3. bf16 (the kernels' ``UPCAST``): ``tl.dot`` of bf16 operands gives wrong sums, and the cast
   from float32 truncates instead of rounding to nearest.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from typing import Any

from .triton_kernels import require_triton

_warned = False


def launch(kernel: Any, grid: tuple[int, ...], *args: Any, **kwargs: Any) -> None:
    """Run ``kernel`` (a ``@triton.jit`` function) over ``grid``: compiled on a GPU, interpreted on a CPU.

    Whether the arguments are on the CPU is read from the first one, a tensor.
    """
    require_triton()
    if args[0].device.type != "cpu":
        kernel[grid](*args, **kwargs)
        return
    _warn_once()
    with _interpreter_patched():
        _interpreted(kernel)[grid](*args, **kwargs)


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("conv_impl 'fused_triton' on a CPU runs its kernels in Triton's interpreter, hundreds of "
                      "times slower than library convs on the same CPU: meant for tests; on a CPU use 'auto'",
                      stacklevel=4)


@functools.cache
def _interpreted(kernel: Any) -> Any:
    """The kernel as Triton's interpreter runs it, made once."""
    from triton.runtime.interpreter import InterpretedFunction

    return InterpretedFunction(kernel.fn)


@contextlib.contextmanager
def _interpreter_patched() -> Iterator[None]:
    """Flaws 1 and 2 of the module docstring, worked around for the duration of a CPU launch."""
    from triton.runtime import interpreter
    from triton.runtime.jit import JITFunction

    def call_interpreted(self: JITFunction, *args: Any, **kwargs: Any) -> Any:
        return interpreter.InterpretedFunction(self.fn).rewrite()(*args, **kwargs)

    patch_tensor = interpreter._patch_lang_tensor

    def patch_tensor_with_index(tensor: Any, scope: Any) -> None:
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    originals = JITFunction.__call__, interpreter._patch_lang_tensor
    JITFunction.__call__ = call_interpreted  # type: ignore[method-assign]
    interpreter._patch_lang_tensor = patch_tensor_with_index
    try:
        yield
    finally:
        JITFunction.__call__, interpreter._patch_lang_tensor = originals  # type: ignore[method-assign]
