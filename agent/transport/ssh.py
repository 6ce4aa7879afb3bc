"""NETCONF over SSH (RFC 6242): an asyncssh server that hands one byte stream per session up.

Only the ``netconf`` subsystem is served. Shell, exec, pty, other subsystems, agent/X11 and
port forwarding are refused. Users log in with a password or a public key from
:class:`agent.users.UserStore`.

Nothing here blocks the event loop: the SSH handshakes run as asyncio protocol callbacks,
scrypt password checks run in a small thread pool (unless the store's in-memory cache
answers), and host keys are created in a thread at start-up.

Flow control: when a client stops reading, asyncssh buffers our output per channel. Past
:data:`WRITE_HIGH_WATER` bytes we stop reading that channel's input (so the protocol layer
gets no new requests and produces no new replies; the client's SSH window then closes) and
resume below :data:`WRITE_LOW_WATER`. A session whose output still grows past
:data:`WRITE_HARD_LIMIT` (e.g. notifications to a client that never reads) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import tempfile
import time
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncssh
from asyncssh.constants import MSG_IGNORE, MSG_SERVICE_ACCEPT, MSG_SERVICE_REQUEST
from asyncssh.packet import String

from agent.users import UserStore, valid_user_name

log = logging.getLogger(__name__)

SUBSYSTEM = "netconf"

WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
WRITE_HARD_LIMIT = 64 * 1024 * 1024
MAX_STARTUPS = 32  # connections that have not authenticated yet (cf. OpenSSH MaxStartups)
MAX_PASSWORD_FAILURES = 5  # per connection, then disconnect
CLOSE_GRACE = 10.0  # seconds a closing session may take to flush its output
KEEPALIVE_INTERVAL = 60.0  # SSH-level keepalive: a dead client's sessions (and locks) go away
KEEPALIVE_COUNT_MAX = 3

# Host key files (OpenSSH names) and the host key algorithms each one is offered with.
# ssh-rsa (SHA-1 signatures) is not offered, as in OpenSSH >= 8.8.
HOST_KEYS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "ssh_host_ed25519_key": ("ssh-ed25519", {}, ("ssh-ed25519",)),
    "ssh_host_rsa_key": ("ssh-rsa", {"key_size": 3072}, ("rsa-sha2-512", "rsa-sha2-256")),
}

# Advertised to clients in server-sig-algs (RFC 8308) for public-key user auth: no SHA-1.
_USER_SIG_ALGS = [
    "ssh-ed25519",
    "ssh-ed448",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
]


# ---- the seam toward the protocol layer ---------------------------------------------------


@dataclass
class SessionIO:
    """What a NETCONF session gets from the transport."""

    username: str
    peer: tuple[str, int]
    write: Callable[[bytes], None]  # queue bytes to the client (never raises)
    close: Callable[[], None]  # close the channel (output is flushed first)


class SessionHandler(Protocol):
    """What the transport calls on a NETCONF session.

    Optionally a handler may also define ``eof_received() -> None``: then the channel stays
    half-open after the client's EOF and the handler closes it when its replies are out.
    Without it the transport closes the channel (after flushing) on EOF.
    """

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None: ...


SessionFactory = Callable[[SessionIO], SessionHandler]


@dataclass(frozen=True)
class SessionStats:
    """A snapshot of one NETCONF session's transport state."""

    username: str
    peer: tuple[str, int]
    write_buffer: int  # bytes queued toward the client now
    max_write_buffer: int  # largest write_buffer seen
    pauses: int  # times input was paused because the client was not reading
    paused: bool


# ---- host keys ------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write *data* to *path* atomically with *mode*."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def ensure_host_keys(state_dir: Path) -> list[asyncssh.SSHKey]:
    """Load the host keys from *state_dir*, creating missing ones (mode 0600). Blocking."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = []
    for filename, (alg, params, _) in HOST_KEYS.items():
        path = state_dir / filename
        if path.exists():
            key = asyncssh.read_private_key(path)
            if key.algorithm.decode() != alg:
                raise ValueError(f"{path}: expected a {alg} key, found {key.algorithm.decode()}")
            if path.stat().st_mode & 0o077:
                log.warning("%s is readable by group or others; it should be mode 0600", path)
        else:
            key = asyncssh.generate_private_key(alg, comment=f"netconf-vrrp-agent {filename}",
                                                **params)
            _write_private(path, key.export_private_key(), 0o600)
            _write_private(path.with_name(filename + ".pub"), key.export_public_key(), 0o644)
            log.info("created host key %s", path)
        log.info("host key %s %s", alg, key.get_fingerprint("sha256"))
        keys.append(key)
    return keys


def host_keypairs(keys: list[asyncssh.SSHKey]) -> list[asyncssh.SSHKeyPair]:
    """One key pair object per host key algorithm.

    asyncssh keeps one key pair per key and, per connection, calls ``set_sig_algorithm`` on
    that *shared* object between KEXINIT and signing the exchange hash. With one RSA key
    offered as rsa-sha2-256 and rsa-sha2-512, two concurrent handshakes could make each
    other sign with the wrong algorithm. Separate objects, each fixed to one algorithm,
    avoid that and also drop the SHA-1 ``ssh-rsa`` algorithm.
    """
    pairs = []
    for key in keys:
        algs = [a for t, _, offered in HOST_KEYS.values() if t == key.algorithm.decode()
                for a in offered]
        for alg in algs:
            (pair,) = asyncssh.load_keypairs(key)
            pair.host_key_algorithms = (alg.encode(),)
            pair.set_sig_algorithm(alg.encode())
            pairs.append(pair)
    return pairs


@functools.lru_cache(maxsize=1024)
def _key_blob(key_line: str) -> bytes | None:
    try:
        return asyncssh.import_public_key(key_line.strip()).public_data
    except (asyncssh.KeyImportError, ValueError):
        log.warning("ignoring unparsable authorized key %.40r", key_line)
        return None


_USERAUTH = b"ssh-userauth"
_asyncssh_service_request = getattr(asyncssh.SSHServerConnection, "_process_service_request", None)


def _service_request(conn: Any, pkttype: int, pktid: int, packet: Any) -> None:
    """Accept a repeated ``ssh-userauth`` service request while authentication is running.

    paramiko (and so ncclient) sends SERVICE_REQUEST before *every* authentication attempt;
    asyncssh accepts only the first and disconnects on the second ("Unexpected service in
    service request"), so e.g. a refused key followed by a password fails. OpenSSH's sshd
    accepts ssh-userauth again until the user is authenticated; so do we.
    """
    if conn._next_service is None and conn._auth_in_progress and not conn._auth_complete:
        service = packet.get_string()
        packet.check_end()
        if service != _USERAUTH:
            raise asyncssh.ServiceNotAvailable("Unexpected service in service request")
        conn.send_packet(MSG_SERVICE_ACCEPT, String(service))
        return
    assert _asyncssh_service_request is not None
    _asyncssh_service_request(conn, pkttype, pktid, packet)


def _encryption_algs() -> list[str]:
    """asyncssh's default ciphers minus CBC modes (see :func:`_skip_empty_ignore`)."""
    from asyncssh.encryption import get_default_encryption_algs

    return [a.decode() for a in get_default_encryption_algs() if b"-cbc" not in a]


_asyncssh_send_packet = asyncssh.SSHServerConnection.send_packet
_EMPTY_STRING = String(b"")


def _skip_empty_ignore(self: Any, pkttype: int, *args: bytes, handler: Any = None) -> None:
    """Don't put an empty SSH_MSG_IGNORE before every packet.

    asyncssh does it as a countermeasure against the CBC-mode plaintext recovery
    attack; this server offers no CBC cipher (:func:`_encryption_algs`), and the extra
    packet doubled the packets, syscalls and MACs per NETCONF reply.
    """
    if pkttype == MSG_IGNORE and args == (_EMPTY_STRING,):
        return
    _asyncssh_send_packet(self, pkttype, *args, handler=handler)


def _install_service_request_fix(conn: asyncssh.SSHServerConnection) -> None:
    handlers = getattr(type(conn), "_packet_handlers", None)
    needed = ("_next_service", "_auth_in_progress", "_auth_complete")
    if (
        not isinstance(handlers, dict)
        or handlers.get(MSG_SERVICE_REQUEST) is not _asyncssh_service_request
        or not all(hasattr(conn, a) for a in needed)
    ):
        log.debug("asyncssh internals changed; repeated ssh-userauth requests not handled")
        return
    patched = dict(handlers)
    patched[MSG_SERVICE_REQUEST] = _service_request
    conn._packet_handlers = patched  # type: ignore[attr-defined]


def _enable_quickack(conn: asyncssh.SSHServerConnection) -> None:
    """ACK every incoming segment at once (Linux TCP_QUICKACK, re-armed on each read).

    Clients that leave Nagle on (paramiko, so ncclient) send two packets back to back during
    the handshake (version + KEXINIT, NEWKEYS + SERVICE_REQUEST); the second waits for the
    ACK of the first, which Linux delays by 40 ms when the server has nothing to send back.
    That made a login take ~90 ms instead of ~8 ms. The kernel drops quick-ack mode on its
    own, so it is set again before each read is processed (one cheap setsockopt).
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    sock = conn.get_extra_info("socket")
    if quickack is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    receive = conn.data_received

    def data_received(data: bytes, *args: Any) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        receive(data, *args)

    conn.data_received = data_received  # type: ignore[method-assign]


def _fmt_peer(peer: tuple[str, int]) -> str:
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---- per-listener, per-connection and per-channel objects --------------------------------


class _ServerState:
    """Shared by all connections of one listener."""

    def __init__(self, users: UserStore, session_factory: SessionFactory, max_sessions: int):
        self.users = users
        self.session_factory = session_factory
        self.max_sessions = max_sessions
        self.executor = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="ssh-auth"
        )
        self.connections: set[_Connection] = set()
        self.channels: set[_Channel] = set()
        self.unauthenticated = 0
        self.closing = False


class _Connection(asyncssh.SSHServer):
    """One SSH connection: admission, authentication, session channel creation."""

    def __init__(self, state: _ServerState) -> None:
        self._state = state
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.username = ""
        self.authenticated = False
        self.channels: set[_Channel] = set()
        self._method = ""
        self._password_failures = 0
        self._started = time.monotonic()

    # connection life cycle

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        state = self._state
        self.conn = conn
        _install_service_request_fix(conn)
        conn.send_packet = types.MethodType(_skip_empty_ignore, conn)  # type: ignore[method-assign]
        _enable_quickack(conn)
        peername = conn.get_extra_info("peername") or ("?", 0)
        self.peer = (str(peername[0]), int(peername[1]))
        state.connections.add(self)
        state.unauthenticated += 1
        too_many = None
        if state.closing:
            too_many = "server shutting down"
        elif state.unauthenticated > MAX_STARTUPS:
            too_many = f"more than {MAX_STARTUPS} unauthenticated connections"
        elif len(state.connections) > state.max_sessions + MAX_STARTUPS:
            too_many = f"more than {state.max_sessions + MAX_STARTUPS} connections"
        if too_many:
            log.warning("SSH connection from %s refused: %s", _fmt_peer(self.peer), too_many)
            asyncio.get_running_loop().call_soon(
                conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS, "Too many connections"
            )
        else:
            log.info("SSH connection from %s", _fmt_peer(self.peer))

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        state.connections.discard(self)
        if not self.authenticated:
            state.unauthenticated -= 1
        who = f"of user {self.username} " if self.authenticated else ""
        reason = f": {exc}" if exc else ""
        log.info(
            "SSH connection %sfrom %s closed after %.1f s%s",
            who,
            _fmt_peer(self.peer),
            time.monotonic() - self._started,
            reason,
        )

    # authentication

    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True  # always require auth; never reveal whether the user exists

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> Any:
        """Answer from the cache at once, else run scrypt in the thread pool."""
        if valid_user_name(username) and self._state.users.check_password_cache(
            username, password
        ):
            self._method = "password"
            return True
        return self._validate_password_slow(username, password)

    async def _validate_password_slow(self, username: str, password: str) -> bool:
        ok = False
        if valid_user_name(username):
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(
                self._state.executor, self._state.users.verify_password, username, password
            )
        if ok:
            self._method = "password"
            return True
        self._password_failures += 1
        log.warning(
            "SSH password authentication failed for user %r from %s",
            username[:64],
            _fmt_peer(self.peer),
        )
        if self._password_failures >= MAX_PASSWORD_FAILURES and self.conn is not None:
            log.warning("SSH connection from %s: too many authentication failures",
                        _fmt_peer(self.peer))
            asyncio.get_running_loop().call_soon(
                self.conn.disconnect,
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                "Too many authentication failures",
            )
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if valid_user_name(username):
            blob = key.public_data
            for line in self._state.users.authorized_keys(username):
                if _key_blob(line) == blob:
                    self._method = f"publickey {key.get_fingerprint('sha256')}"
                    return True
        log.info(
            "SSH public key %s not authorized for user %r from %s",
            key.get_fingerprint("sha256"),
            username[:64],
            _fmt_peer(self.peer),
        )
        return False

    def auth_completed(self) -> None:
        self.authenticated = True
        self._state.unauthenticated -= 1
        log.info(
            "SSH user %s authenticated (%s) from %s",
            self.username,
            self._method or "?",
            _fmt_peer(self.peer),
        )

    # channels

    def session_requested(self) -> _Channel:
        state = self._state
        if state.closing or len(state.channels) >= state.max_sessions:
            log.warning(
                "SSH session for user %s from %s refused: %d sessions already open",
                self.username,
                _fmt_peer(self.peer),
                len(state.channels),
            )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE, "Too many NETCONF sessions"
            )
        return _Channel(self, state)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        log.warning("SSH port forwarding refused for %s", _fmt_peer(self.peer))
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        log.warning("SSH remote port forwarding refused for %s", _fmt_peer(self.peer))
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        log.warning("SSH socket forwarding refused for %s", _fmt_peer(self.peer))
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        log.warning("SSH socket forwarding refused for %s", _fmt_peer(self.peer))
        return False


class _Channel(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel; once the netconf subsystem starts, one NETCONF session."""

    def __init__(self, owner: _Connection, state: _ServerState) -> None:
        self._owner = owner
        self._state = state
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._handler: SessionHandler | None = None
        self._closing = False
        self._lost = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.paused = False
        self.pauses = 0
        self.max_write_buffer = 0

    # asyncssh callbacks

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        chan.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        self._state.channels.add(self)
        self._owner.channels.add(self)

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        log.info("SSH pty refused for user %s from %s", self._owner.username, self._peer_s)
        return False

    def shell_requested(self) -> bool:
        log.warning("SSH shell refused for user %s from %s", self._owner.username, self._peer_s)
        return False

    def exec_requested(self, command: str) -> bool:
        log.warning("SSH exec refused for user %s from %s", self._owner.username, self._peer_s)
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem == SUBSYSTEM:
            return True
        log.warning(
            "SSH subsystem %r refused for user %s from %s",
            subsystem[:64],
            self._owner.username,
            self._peer_s,
        )
        return False

    def session_started(self) -> None:
        io = SessionIO(
            username=self._owner.username,
            peer=self._owner.peer,
            write=self._write,
            close=self.close,
        )
        try:
            self._handler = self._state.session_factory(io)
        except Exception:
            log.exception("NETCONF session setup failed for %s", self._peer_s)
            self.close()
            return
        log.info("NETCONF session started for user %s from %s", io.username, self._peer_s)
        if self.paused:
            # asyncssh resumes reading right after session_started returns; pause again.
            asyncio.get_running_loop().call_soon(self._reapply_pause)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._handler is None or self._closing or datatype is not None:
            return
        try:
            self._handler.data_received(data)
        except Exception:
            log.exception("NETCONF session of %s failed; closing it", self._peer_s)
            self.close()

    def eof_received(self) -> bool:
        hook = getattr(self._handler, "eof_received", None)
        if callable(hook):
            try:
                hook()
            except Exception:
                log.exception("NETCONF session of %s failed on EOF", self._peer_s)
                self.close()
            return True
        self.close()
        return True

    def pause_writing(self) -> None:
        if self._chan is None:
            return
        self.paused = True
        self.pauses += 1
        self._chan.pause_reading()
        log.info(
            "NETCONF session of %s: client is not reading (%d bytes queued); input paused",
            self._peer_s,
            self._chan.get_write_buffer_size(),
        )

    def resume_writing(self) -> None:
        if self._chan is None:
            return
        self.paused = False
        self._chan.resume_reading()
        log.debug("NETCONF session of %s: output drained; input resumed", self._peer_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._state.channels.discard(self)
        self._owner.channels.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        handler, self._handler = self._handler, None
        if handler is not None:
            log.info("NETCONF session of user %s from %s ended", self._owner.username,
                     self._peer_s)
            try:
                handler.connection_lost()
            except Exception:
                log.exception("NETCONF session of %s failed while closing", self._peer_s)
        # The session closed by the server side was the connection's reason to exist.
        conn = self._owner.conn
        if self._closing and not self._owner.channels and conn is not None:
            conn.close()

    # used through SessionIO

    @property
    def _peer_s(self) -> str:
        return _fmt_peer(self._owner.peer)

    def _reapply_pause(self) -> None:
        if self.paused and self._chan is not None:
            self._chan.pause_reading()

    def _write(self, data: bytes) -> None:
        chan = self._chan
        if chan is None or self._closing or chan.is_closing() or not data:
            return
        chan.write(data)
        size = chan.get_write_buffer_size()
        if size > self.max_write_buffer:
            self.max_write_buffer = size
        if size > WRITE_HARD_LIMIT:
            log.warning(
                "NETCONF session of %s: %d bytes queued for a client that does not read; "
                "dropping the connection",
                self._peer_s,
                size,
            )
            self._abort()

    def close(self) -> None:
        """Close the channel gracefully: flush queued output, then close."""
        if self._closing or self._lost or self._chan is None:
            return
        self._closing = True
        self._chan.close()
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(CLOSE_GRACE, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        log.warning("NETCONF session of %s: output not drained in %.0f s; dropping connection",
                    self._peer_s, CLOSE_GRACE)
        self._abort()

    def _abort(self) -> None:
        self._closing = True
        if self._owner.conn is not None:
            self._owner.conn.abort()

    def stats(self) -> SessionStats:
        chan = self._chan
        return SessionStats(
            username=self._owner.username,
            peer=self._owner.peer,
            write_buffer=chan.get_write_buffer_size() if chan is not None else 0,
            max_write_buffer=self.max_write_buffer,
            pauses=self.pauses,
            paused=self.paused,
        )


# ---- the listener -------------------------------------------------------------------------


class NetconfSSHServer:
    """A running NETCONF SSH listener (what :func:`start_server` returns)."""

    def __init__(self, acceptor: asyncssh.SSHAcceptor, state: _ServerState) -> None:
        self._acceptor = acceptor
        self._state = state

    @property
    def port(self) -> int:
        """The bound TCP port (useful when started with port 0)."""
        return self._acceptor.get_port()

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """The bound socket addresses."""
        return self._acceptor.get_addresses()

    def session_count(self) -> int:
        """Number of open session channels."""
        return len(self._state.channels)

    def sessions(self) -> list[SessionStats]:
        """Transport state of every open session channel."""
        return [chan.stats() for chan in self._state.channels]

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._state.closing = True
        self._acceptor.close()
        for conn in list(self._state.connections):
            if conn.conn is not None:
                conn.conn.close()

    async def wait_closed(self) -> None:
        """Wait until the listener and all connections are closed."""
        await self._acceptor.wait_closed()
        for conn in list(self._state.connections):
            if conn.conn is not None:
                await conn.conn.wait_closed()
        self._state.executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> NetconfSSHServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(
    *,
    host: str,
    port: int,
    state_dir: Path,
    users: UserStore,
    session_factory: SessionFactory,
    login_timeout: float = 30.0,
    max_sessions: int = 64,
) -> NetconfSSHServer:
    """Listen for NETCONF over SSH on *host*:*port* (0: any free port, see ``.port``).

    Host keys are read from (or created in) *state_dir*.
    """
    state_dir = Path(state_dir)
    keys = await asyncio.to_thread(ensure_host_keys, state_dir)
    state = _ServerState(users, session_factory, max_sessions)
    try:
        acceptor = await asyncssh.listen(
            host,
            port,
            server_factory=lambda: _Connection(state),
            server_host_keys=host_keypairs(keys),
            config=None,
            login_timeout=login_timeout,
            keepalive_interval=KEEPALIVE_INTERVAL,
            encryption_algs=_encryption_algs(),
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
            encoding=None,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            gss_host=None,
            gss_kex=False,
            gss_auth=False,
            host_based_auth=False,
            rdns_lookup=False,
            signature_algs=_USER_SIG_ALGS,
        )
    except BaseException:
        state.executor.shutdown(wait=False)
        raise
    server = NetconfSSHServer(acceptor, state)
    log.info("NETCONF SSH server listening on %s",
             ", ".join(_fmt_peer(a[:2]) for a in server.addresses))
    return server
