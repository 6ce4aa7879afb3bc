"""A worker thread living inside the managed network namespace.

``setns(2)`` changes the namespace of the calling thread only, so one dedicated
thread enters the namespace once; sockets it creates stay bound to that
namespace (and may be used from any thread), and ``/proc/sys/net`` read from it
shows the namespace's sysctls. Python 3.11 has no ``os.setns``: libc's is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from agent.backends.linux.rtnl import RtnlSocket
from agent.backends.nsenter import enter_netns

T = TypeVar("T")


def sysctl_path(key: str) -> str:
    """``net/ipv4/conf/eth0.5/forwarding`` → its /proc/sys path (keys use '/', not '.')."""
    return "/proc/sys/" + key


def read_sysctls(keys: list[str]) -> dict[str, str | None]:
    """Values of ``keys`` read in the calling thread's namespace (None: no such file)."""
    out: dict[str, str | None] = {}
    for k in keys:
        try:
            with open(sysctl_path(k)) as f:
                out[k] = f.read().strip()
        except OSError:
            out[k] = None
    return out


class NsThread:
    """Runs callables inside ``netns`` (``None``: the agent's own namespace)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._ex = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{netns or 'self'}",
                                      initializer=enter_netns, initargs=(netns,))

    def call(self, fn: Callable[..., T], *args) -> T:
        return self._ex.submit(fn, *args).result()

    def submit(self, fn: Callable[..., T], *args) -> Future[T]:
        """Run ``fn`` in the namespace without waiting (``asyncio.wrap_future`` it)."""
        return self._ex.submit(fn, *args)

    def socket(self, groups: int = 0, strict: bool = False) -> RtnlSocket:
        return self.call(RtnlSocket, groups, strict)

    def read_sysctls(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Values of ``keys`` (None when the file does not exist)."""
        return self.call(read_sysctls, list(keys))

    def write_sysctl(self, key: str, value: str) -> None:
        def run() -> None:
            with open(sysctl_path(key), "w") as f:
                f.write(value)

        self.call(run)

    def close(self) -> None:
        self._ex.shutdown(wait=False)
