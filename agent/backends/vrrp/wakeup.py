"""A self-pipe that wakes a thread blocked in ``select`` (so ``stop()`` is immediate)."""

from __future__ import annotations

import os


class Wakeup:
    """``fd`` goes into the thread's ``select`` read list; ``wake()`` makes it readable."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()

    def wake(self) -> None:
        os.write(self._w, b"x")

    def close(self) -> None:
        for fd in (self.fd, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
