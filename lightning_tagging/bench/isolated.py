"""Run one function in a fresh process, with a time limit, so that a crash or a hang costs only that call.

Some benchmark configurations can take the whole process down rather than raise: a compiler
that aborts in native code, a kernel that corrupts the CUDA context, a compile that runs
past the time left. In a child process such a failure becomes an error message, and the
suite goes on with a clean parent.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")


class ChildFailed(RuntimeError):
    """The function raised, crashed or ran out of time in its child process (the message says which)."""


def _child(conn: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result: tuple[str, Any] = ("ok", function(*args))
    except BaseException as error:  # everything, so the parent gets a message rather than a bare exit code
        last = traceback.extract_tb(error.__traceback__)[-1:]
        where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
        result = ("error", f"{type(error).__name__}: {error}{where}")
    conn.send(result)
    conn.close()


def call_isolated(function: Callable[..., T], args: tuple[Any, ...], timeout_s: float) -> T:
    """``function(*args)`` in a spawned process; its return value (both must pickle).

    Raises :class:`ChildFailed` when the function raises (with its message), when the child
    dies without answering (a native crash: the exit code or signal), or when no answer comes
    within ``timeout_s`` seconds (the child is killed). The child starts with "spawn": a
    fresh interpreter that shares no CUDA context or compiler caches with the caller, and
    inherits its environment (``PYTHONPATH``), stdout and stderr.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args), daemon=True)
    process.start()
    sender.close()  # the child holds the only sending end now: its exit reads as end of file here
    try:
        if not receiver.poll(max(0.0, timeout_s)):
            process.kill()
            process.join()
            raise ChildFailed(f"timed out after {timeout_s:.0f} s (killed)")
        try:
            status, value = receiver.recv()
        except EOFError:
            process.join()
            raise ChildFailed(f"crashed: {_describe_exit(process.exitcode)}") from None
        process.join(timeout=60)  # it has answered; a child stuck in teardown must not hold up the caller
        if process.is_alive():
            process.kill()
            process.join()
    finally:
        receiver.close()
    if status != "ok":
        raise ChildFailed(value)
    return value


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
