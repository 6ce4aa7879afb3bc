"""``serve``: build the NETCONF server from the state directory and run it."""

from __future__ import annotations

import asyncio
import logging
import signal
import tomllib
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
    unknown = set(nc) - {"max-message-size", "hello-timeout", "max-sessions"}
    if unknown:
        raise ValueError(f"unknown settings in [netconf]: {', '.join(sorted(unknown))}")
    limits.max_message_size = int(nc.get("max-message-size", limits.max_message_size))
    limits.hello_timeout = float(nc.get("hello-timeout", limits.hello_timeout))
    limits.max_sessions = int(nc.get("max-sessions", limits.max_sessions))
    return limits


def build_server(state_dir: Path, limits: Limits) -> NetconfServer:
    schema = Schema.load()
    server = NetconfServer(schema, state_dir, limits=limits)
    server.load_startup()
    return server


async def serve(opts: ServeOptions) -> None:
    from agent.transport.ssh import start_server
    from agent.users import UserStore

    limits = load_limits(opts.config)
    server = build_server(opts.state_dir, limits)
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
