"""call_isolated turns a child's value, exception, crash or hang into a value or a ChildFailed message."""

from __future__ import annotations

import os
import time

import pytest

from lightning_tagging.bench.isolated import ChildFailed, call_isolated


def test_the_value_comes_back() -> None:
    assert call_isolated(pow, (2, 10), timeout_s=60) == 1024


def test_an_exception_becomes_its_message() -> None:
    with pytest.raises(ChildFailed, match="ValueError: invalid literal"):
        call_isolated(int, ("not a number",), timeout_s=60)


def test_a_native_crash_is_reported_with_its_signal() -> None:
    with pytest.raises(ChildFailed, match="crashed: killed by SIGABRT"):
        call_isolated(os.abort, (), timeout_s=60)


def test_a_child_past_its_time_is_killed() -> None:
    with pytest.raises(ChildFailed, match=r"timed out after 1 s \(killed\)"):
        call_isolated(time.sleep, (600,), timeout_s=1)
