"""Command line: ``netconf-vrrp-agent useradd ...``, ``serve ...`` and ``lab up|status|down``.

Outside tools depend on this interface; keep options and exit codes stable:
0 success, 1 operational error (bad key file, unreadable stdin, ...), 2 usage error
(argparse) or ``serve`` with no NETCONF user configured.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent import __version__
from agent.users import UserStore, UserStoreError, parse_public_key, valid_user_name

PROG = "netconf-vrrp-agent"
DEFAULT_LISTEN = "0.0.0.0"
DEFAULT_PORT = 830
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
BACKENDS = ("linux", "none")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``serve`` was told, handed to :func:`agent.app.run_server`."""

    state_dir: Path
    listen: str
    port: int
    netns: str | None
    config: Path | None
    log_level: str
    backend: str = "linux"


class CliError(Exception):
    """An operational error: printed as ``netconf-vrrp-agent: error: ...``, exit 1."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"log level must be one of {', '.join(LOG_LEVELS)}")
    return level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="NETCONF/YANG agent for Linux routers (interfaces, IP, VRRP)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    useradd = sub.add_parser(
        "useradd",
        help="add a NETCONF user or add credentials to one",
        description="Add a NETCONF user (or set its password / add keys if it exists).",
    )
    useradd.add_argument("--state-dir", type=Path, required=True, metavar="DIR",
                         help="state directory (created with mode 0700 if missing)")
    useradd.add_argument("name", metavar="NAME", help="user name")
    useradd.add_argument("--password-stdin", action="store_true",
                         help="read the password from the first line of standard input")
    useradd.add_argument("--authorized-key", type=Path, metavar="FILE",
                         help="add the OpenSSH public key(s) in FILE")

    serve = sub.add_parser("serve", help="run the NETCONF server",
                           description="Run the NETCONF server (SSH, RFC 6242).")
    serve.add_argument("--state-dir", type=Path, required=True, metavar="DIR",
                       help="state directory: users, host keys, startup datastore")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR",
                       help=f"address to listen on (default {DEFAULT_LISTEN})")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N",
                       help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--netns", metavar="NAME",
                       help="network namespace to manage (default: the current one)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="agent configuration file")
    serve.add_argument("--backend", choices=BACKENDS, default="linux",
                       help="linux: apply configuration to the kernel and keepalived (default); "
                            "none: datastores only, nothing applied (protocol testing)")
    serve.add_argument("--log-level", type=_log_level, default="INFO", metavar="LEVEL",
                       help=f"one of {', '.join(LOG_LEVELS)} (default INFO)")
    _add_lab_parser(sub)
    return parser


def _add_lab_parser(sub: argparse._SubParsersAction) -> None:
    from agent import lab

    lab_p = sub.add_parser(
        "lab", help="the VRRP demo lab in network namespaces (up, status, down)",
        description="Two routers, each managed by its own agent, a LAN switch and a host, "
                    "in network namespaces.",
    )
    lab_sub = lab_p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    actions = {
        "up": "build the namespaces and start one agent per router",
        "status": "agents' addresses, whether they run, VRRP state of each router",
        "down": "stop the agents and remove everything the lab made",
    }
    for name, text in actions.items():
        p = lab_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--state-dir", type=Path, default=lab.DEFAULT_STATE_DIR, metavar="DIR",
                       help=f"the lab's state directory (default {lab.DEFAULT_STATE_DIR})")
        if name in ("up", "down"):
            p.add_argument("--prefix", default=lab.DEFAULT_PREFIX if name == "up" else None,
                           help="network namespace name prefix (default "
                                f"{lab.DEFAULT_PREFIX!r}: {lab.DEFAULT_PREFIX}r1, ...)")
        if name == "up":
            p.add_argument("--address-base", default=lab.DEFAULT_ADDRESS_BASE, metavar="ADDR",
                           help="loopback address before the agents' ones: r1 listens on "
                                f"ADDR+1, r2 on ADDR+2 (default {lab.DEFAULT_ADDRESS_BASE})")
            p.add_argument("--port", type=_port, default=lab.DEFAULT_PORT, metavar="N",
                           help=f"the agents' TCP port (default {lab.DEFAULT_PORT})")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")


def _lab(args: argparse.Namespace) -> int:
    from agent import lab

    try:
        if args.lab_command == "up":
            return lab.up(args.state_dir, args.prefix, args.address_base, args.port, sys.stdout)
        if args.lab_command == "status":
            return lab.status(args.state_dir, sys.stdout, as_json=args.json)
        return lab.down(args.state_dir, args.prefix, sys.stdout)
    except lab.LabError as exc:
        raise CliError(str(exc)) from None


def _read_password(stdin: object) -> str:
    """First line of stdin without its line ending."""
    raw = getattr(stdin, "buffer", stdin).readline()
    if isinstance(raw, bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError("the password on standard input is not valid UTF-8") from None
    else:
        line = raw
    if line.endswith("\n"):
        line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
    if not line:
        raise CliError("no password on standard input (expected it on the first line)")
    return line


def _read_keys(path: Path) -> list[str]:
    """The public key lines of an authorized-keys style file, each validated."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    keys = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parse_public_key(line)
        except UserStoreError as exc:
            raise CliError(f"{path}:{lineno}: {exc}") from None
        keys.append(line)
    if not keys:
        raise CliError(f"{path}: no public key found")
    return keys


def _useradd(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (args.password_stdin or args.authorized_key):
        parser.error("useradd needs --password-stdin and/or --authorized-key FILE")
    if not valid_user_name(args.name):
        parser.error(f"invalid user name {args.name!r}: use 1-32 of A-Z a-z 0-9 _ . - "
                     "starting with a letter or _")
    password = _read_password(sys.stdin) if args.password_stdin else None
    keys = _read_keys(args.authorized_key) if args.authorized_key else []
    state_dir: Path = args.state_dir
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = UserStore(state_dir)
        store.add_user(args.name, password)
        for key in keys:
            store.add_authorized_key(args.name, key)
    except (OSError, UserStoreError) as exc:
        raise CliError(str(exc)) from None
    done = []
    if password is not None:
        done.append("password set")
    if keys:
        done.append(f"{len(keys)} public key{'s' if len(keys) != 1 else ''} added")
    print(f"user {args.name}: {', '.join(done)} ({store.path})")
    return 0


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # asyncssh logs several INFO lines per connection; ours say what matters.
    logging.getLogger("asyncssh").setLevel("DEBUG" if level == "DEBUG" else "WARNING")


def _serve(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    try:
        has_users = UserStore(state_dir).has_users()
    except (OSError, UserStoreError) as exc:
        raise CliError(str(exc)) from None
    if not has_users:
        print(
            f"no NETCONF user configured in {state_dir}; add one with: "
            f"{PROG} useradd --state-dir {state_dir} NAME --password-stdin",
            file=sys.stderr,
        )
        return 2
    options = ServeOptions(
        state_dir=state_dir,
        listen=args.listen,
        port=args.port,
        netns=args.netns,
        config=args.config,
        log_level=args.log_level,
        backend=args.backend,
    )
    _setup_logging(options.log_level)
    from agent.app import run_server  # imported late: it pulls in the whole agent

    try:
        result = run_server(options)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netconf-vrrp-agent`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "useradd":
            return _useradd(args, parser)
        if args.command == "lab":
            return _lab(args)
        return _serve(args)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
