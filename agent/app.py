"""``serve``: build the NETCONF server from the state directory and run it."""

from __future__ import annotations

import asyncio
import logging
import signal
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.datastore.schema import Schema
from agent.server import Limits, NetconfServer

if TYPE_CHECKING:
    from agent.cli import ServeOptions

log = logging.getLogger("agent")


def load_limits(path: Path | None) -> Limits:
    """Limits from the ``[netconf]`` table of the TOML config file (all optional)."""
    limits = Limits()
    if path is None:
        return limits
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    nc = cfg.get("netconf", {})
    unknown = set(nc) - {"max-message-size", "hello-timeout", "max-sessions",
                         "replay-log-size", "replay-log-bytes", "replay-log-age"}
    if unknown:
        raise ValueError(f"unknown settings in [netconf]: {', '.join(sorted(unknown))}")
    limits.max_message_size = int(nc.get("max-message-size", limits.max_message_size))
    limits.hello_timeout = float(nc.get("hello-timeout", limits.hello_timeout))
    limits.max_sessions = int(nc.get("max-sessions", limits.max_sessions))
    limits.replay_log_size = int(nc.get("replay-log-size", limits.replay_log_size))
    limits.replay_log_bytes = int(nc.get("replay-log-bytes", limits.replay_log_bytes))
    limits.replay_log_age = float(nc.get("replay-log-age", limits.replay_log_age))
    return limits


@dataclass
class BackendContext:
    """What a backend's ``attach(server, ctx)`` gets: where it works and how to hook in.

    ``tasks``: coroutine factories started by ``serve`` once the event loop runs (watchers);
    ``on_stop``: callables run at shutdown, in reverse order of registration.
    """

    state_dir: Path
    netns: str | None = None
    backend: str = "linux"  # "none": datastores only, no backend attached
    tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)


def attach_backends(server: NetconfServer, ctx: BackendContext) -> None:
    """Wire the backends in: config subscribers (in apply order), state providers, watchers.

    Order matters: the Linux backend creates interfaces the VRRP backend builds on.
    """
    if ctx.backend == "none":
        return
    from agent.backends.linux.config import attach as attach_linux
    from agent.backends.linux.state import attach as attach_linux_state
    from agent.backends.vrrp.backend import attach as attach_vrrp
    from agent.backends.vrrp.state import attach as attach_vrrp_state

    attach_linux(server, ctx)  # first: interfaces, addresses, macvlans
    attach_linux_state(server, ctx)  # interface state from the kernel, before VRRP's
    vrrp = attach_vrrp(server, ctx)  # after the Linux backend: it builds on its interfaces
    attach_vrrp_state(server, ctx, vrrp.keepalived)  # stopped before keepalived (on_stop)


def build_server(
    state_dir: Path, limits: Limits, netns: str | None = None, backend: str = "linux"
) -> tuple[NetconfServer, BackendContext]:
    schema = Schema.load()
    server = NetconfServer(schema, state_dir, limits=limits)
    ctx = BackendContext(state_dir=state_dir, netns=netns, backend=backend)
    attach_backends(server, ctx)
    server.load_startup()  # applies startup through the backends: the kernel follows
    return server, ctx


async def serve(opts: ServeOptions) -> None:
    from agent.transport.ssh import start_server
    from agent.users import UserStore

    limits = load_limits(opts.config)
    server, ctx = build_server(opts.state_dir, limits, opts.netns, opts.backend)
    tasks = [asyncio.ensure_future(factory()) for factory in ctx.tasks]
    users = UserStore(opts.state_dir)
    acceptor = await start_server(
        host=opts.listen,
        port=opts.port,
        state_dir=opts.state_dir,
        users=users,
        session_factory=server.new_session,
        max_sessions=limits.max_sessions,
    )
    port = getattr(acceptor, "port", None) or opts.port
    log.info("netconf-vrrp-agent listening on %s port %s", opts.listen, port)
    print(f"netconf-vrrp-agent: listening on {opts.listen} port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    acceptor.close()
    for s in list(server.sessions.values()):
        s.close()
    for t in tasks:
        t.cancel()
    for stop_fn in reversed(ctx.on_stop):
        try:
            stop_fn()
        except Exception:  # pragma: no cover - shutdown goes on
            log.exception("backend shutdown step failed")


def run_server(opts: ServeOptions) -> int:
    logging.basicConfig(
        level=getattr(logging, str(opts.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if opts.netns is not None and not Path("/run/netns", opts.netns).exists():
        print(f"netconf-vrrp-agent: network namespace '{opts.netns}' does not exist",
              flush=True)
        return 2
    asyncio.run(serve(opts))
    return 0
