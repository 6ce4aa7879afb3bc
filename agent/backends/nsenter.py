"""Entering a network namespace from Python 3.11 (which has no ``os.setns``).

``setns(2)`` moves the calling *thread* only, so work for another namespace is
done in a thread that entered it; sockets created there stay bound to that
namespace and may then be used from any thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(netns: str | None) -> None:
    """Move the calling thread into ``/run/netns/<netns>`` (``None``: stay)."""
    if not netns:
        return
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` run in a short-lived thread inside ``netns`` (directly when ``None``);
    its result is returned, its exception raised here."""
    if not netns:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            enter_netns(netns)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=run, name=f"netns-{netns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
