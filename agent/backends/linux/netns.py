"""Opening netlink sockets in the managed network namespace."""

from __future__ import annotations

import types
from typing import Any

from pyroute2 import IPRoute

from agent.backends.linux.nsthread import NsThread


class ThreadedIPRoute:
    """An ``IPRoute`` living in its own thread inside the namespace.

    pyroute2 0.9's synchronous API drives an asyncio loop of its own with
    ``run_until_complete``, which fails ("This event loop is already running")
    when called from the agent's event loop thread. Every method call is therefore
    run in a dedicated worker thread (which has entered the namespace); generators
    are consumed there and returned as lists."""

    def __init__(self, netns: str | None) -> None:
        self._thread = NsThread(netns)
        self._ipr = self._thread.call(IPRoute)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ipr, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            def run() -> Any:
                res = attr(*args, **kwargs)
                if isinstance(res, types.GeneratorType) or (
                        hasattr(res, "__next__") and not isinstance(res, (list, tuple, dict))):
                    res = list(res)
                return res

            return self._thread.call(run)

        return call

    def close(self) -> None:
        try:
            self._thread.call(self._ipr.close)
        finally:
            self._thread.close()

    def __enter__(self) -> ThreadedIPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_iproute(netns: str | None) -> ThreadedIPRoute:
    """An IPRoute-like object for the namespace ``netns`` (``None``: the agent's own),
    usable from any thread, including a running asyncio event loop."""
    return ThreadedIPRoute(netns)
