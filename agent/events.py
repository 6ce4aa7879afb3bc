"""In-process event bus: backends publish notification content, sessions receive it.

The bus knows nothing about NETCONF framing or about the backends. A publisher
hands over the notification's content element (e.g. an ietf-vrrp
``vrrp-new-master-event``); subscribers (NETCONF sessions with an active
``create-subscription``) get ``(event_time, content)`` synchronously, in the
event loop's thread. Publishing from another thread must go through
``loop.call_soon_threadsafe(bus.publish, ...)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lxml import etree

log = logging.getLogger(__name__)

Listener = Callable[[float, etree._Element], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: dict[int, Listener] = {}
        self._next = 0
        self.published = 0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns the function that unregisters it."""
        key = self._next
        self._next += 1
        self._listeners[key] = listener

        def unsubscribe() -> None:
            self._listeners.pop(key, None)

        return unsubscribe

    def publish(self, content: etree._Element, event_time: float | None = None) -> None:
        """Deliver ``content`` to every listener; one failing listener never stops the rest."""
        t = time.time() if event_time is None else event_time
        self.published += 1
        for listener in list(self._listeners.values()):
            try:
                listener(t, content)
            except Exception:  # pragma: no cover - logged, other listeners still served
                log.exception("notification listener failed")
