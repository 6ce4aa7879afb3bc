"""Polling helpers for tests that wait for something asynchronous to happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(pred: Callable[[], T], timeout: float = 5.0, step: float = 0.05) -> T:
    """``pred()`` until it is truthy or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def wait(pred: Callable[[], T], timeout: float = 10.0, step: float = 0.05,
         what: str = "condition") -> T:
    """``pred()`` until it is truthy (its value); AssertionError after ``timeout`` s."""
    v = poll(pred, timeout, step)
    if not v:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return v
