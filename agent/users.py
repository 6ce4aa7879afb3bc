"""NETCONF users: scrypt password hashes and SSH public keys in ``STATE_DIR/users.json``.

The file is small, owned by root, mode 0600, and always replaced atomically (temp file in
the same directory, fsync, ``os.replace``), so a reader never sees half a file. Format::

    {"version": 1,
     "users": {"admin": {"password": "scrypt$16384$8$1$<salt b64>$<hash b64>",
                         "authorized_keys": ["ssh-ed25519 AAAA... admin@laptop"]}}}

Password checks cost one scrypt (~50 ms, releases the GIL: run it in a thread). After a
successful check an HMAC of name and password under a per-process random key is kept in
memory, so the same user logging in again with the same password costs microseconds
(:meth:`UserStore.check_password_cache`). The cache is dropped whenever the file changes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh

log = logging.getLogger(__name__)

USERS_FILE = "users.json"
_LOCK_FILE = ".users.json.lock"
_FORMAT_VERSION = 1

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")

# scrypt parameters for new hashes (RFC 7914; 16 MiB of memory, ~50 ms).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32


class UserStoreError(ValueError):
    """Bad user name, password, key or users file."""


def valid_user_name(name: str) -> bool:
    """Return whether *name* is an acceptable user name."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def _check_name(name: str) -> None:
    if not valid_user_name(name):
        raise UserStoreError(
            f"invalid user name {name!r}: 1-32 characters from A-Z a-z 0-9 _ . -, "
            "not starting with a digit, '.' or '-'"
        )


def _pw_bytes(password: str) -> bytes:
    # surrogatepass: any str (even one carrying lone surrogates) has exactly one encoding
    return password.encode("utf-8", "surrogatepass")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def hash_password(password: str) -> str:
    """Return ``scrypt$n$r$p$salt_b64$hash_b64`` for *password* with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(_pw_bytes(password), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """Split a stored hash into (n, r, p, salt, digest); raise UserStoreError if malformed."""
    try:
        scheme, n_s, r_s, p_s, salt_s, digest_s = stored.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt = base64.b64decode(salt_s, validate=True)
        digest = base64.b64decode(digest_s, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise UserStoreError("malformed password hash") from exc
    # Bounds keep a tampered file from turning one login into gigabytes of memory.
    if (
        scheme != "scrypt"
        or not (2**10 <= n <= 2**20 and n & (n - 1) == 0)
        or not 1 <= r <= 32
        or not 1 <= p <= 16
        or not salt
        or not 16 <= len(digest) <= 64
    ):
        raise UserStoreError("unsupported password hash parameters")
    return n, r, p, salt, digest


def verify_hash(stored: str, password: str) -> bool:
    """Check *password* against a stored scrypt hash (constant-time compare)."""
    n, r, p, salt, digest = _parse_hash(stored)
    candidate = _scrypt(_pw_bytes(password), salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)


# Verified against when the user is unknown or has no password, so that the answer takes
# the same time whether or not the user exists.
_DUMMY_HASH = (
    f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(bytes(SALT_BYTES))}${_b64(bytes(HASH_BYTES))}"
)


def parse_public_key(key_line: str) -> asyncssh.SSHKey:
    """Parse one OpenSSH public key line (``type base64 [comment]``); raise UserStoreError."""
    line = key_line.strip()
    if not line or "\n" in line:
        raise UserStoreError("expected exactly one public key line")
    try:
        return asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UserStoreError(f"not an OpenSSH public key: {exc}") from exc


def _empty_doc() -> dict[str, Any]:
    return {"version": _FORMAT_VERSION, "users": {}}


def _validate_doc(doc: Any) -> dict[str, Any]:
    """Check the structure of a loaded users file and return it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), dict):
        raise UserStoreError("users file: expected an object with a 'users' object")
    if doc.get("version") != _FORMAT_VERSION:
        raise UserStoreError(f"users file: unsupported version {doc.get('version')!r}")
    for name, entry in doc["users"].items():
        if not valid_user_name(name) or not isinstance(entry, dict):
            raise UserStoreError(f"users file: bad entry {name!r}")
        password = entry.get("password")
        keys = entry.get("authorized_keys", [])
        if password is not None and not isinstance(password, str):
            raise UserStoreError(f"users file: bad password for {name!r}")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise UserStoreError(f"users file: bad authorized_keys for {name!r}")
    return doc


_FileSig = tuple[int, int, int, int]


class UserStore:
    """The users of one state directory.

    Safe to use from several threads (password checks run in an executor). Readers pick up
    changes made by other processes (``netconf-vrrp-agent useradd`` while the server runs)
    by comparing the file's inode, size and mtime on every call.
    """

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / USERS_FILE
        self._lock = threading.Lock()
        self._cache_key = secrets.token_bytes(32)
        self._users: dict[str, dict[str, Any]] = {}
        self._sig: _FileSig | None = None
        self._generation = 0
        self._cache: dict[str, bytes] = {}
        self.reload()

    # ---- reading -------------------------------------------------------------------------

    def _file_sig(self) -> _FileSig | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> tuple[dict[str, dict[str, Any]], _FileSig | None]:
        """Read the file; return its users and the signature of what was read."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            return {}, None
        try:
            doc = _validate_doc(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserStoreError(f"{self.path}: not valid JSON: {exc}") from exc
        return doc["users"], (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _install(self, users: dict[str, dict[str, Any]], sig: _FileSig | None) -> None:
        """Replace the in-memory state; caller holds the lock."""
        self._users = users
        self._sig = sig
        self._generation += 1
        self._cache.clear()

    def reload(self) -> None:
        """Re-read the users file; raise UserStoreError if it is malformed."""
        users, sig = self._read()
        with self._lock:
            self._install(users, sig)

    def _refresh(self) -> None:
        """Reload if the file changed on disk. A malformed file means no users (fail closed)."""
        sig = self._file_sig()
        with self._lock:
            if sig == self._sig:
                return
        try:
            users, sig = self._read()
        except UserStoreError as exc:
            log.error("%s; refusing all logins until it is fixed", exc)
            users = {}
        with self._lock:
            self._install(users, sig)

    def names(self) -> list[str]:
        """Return the configured user names, sorted."""
        self._refresh()
        with self._lock:
            return sorted(self._users)

    def has_users(self) -> bool:
        """Return whether at least one user can log in (has a password or a key)."""
        self._refresh()
        with self._lock:
            return any(
                u.get("password") or u.get("authorized_keys") for u in self._users.values()
            )

    def authorized_keys(self, name: str) -> list[str]:
        """Return the OpenSSH public key lines of *name* (empty if unknown)."""
        self._refresh()
        with self._lock:
            user = self._users.get(name)
            return list(user.get("authorized_keys", [])) if user else []

    def _cache_tag(self, name: str, password: str) -> bytes:
        msg = _pw_bytes(name) + b"\0" + _pw_bytes(password)
        return hmac.new(self._cache_key, msg, hashlib.sha256).digest()

    def check_password_cache(self, name: str, password: str) -> bool:
        """Fast path: True if this name+password was verified before and the file is unchanged.

        Costs microseconds and never runs scrypt, so it may be called on the event loop.
        False means "unknown", not "wrong": call :meth:`verify_password` then.
        """
        self._refresh()
        tag = self._cache_tag(name, password)
        with self._lock:
            cached = self._cache.get(name)
        return cached is not None and hmac.compare_digest(cached, tag)

    def verify_password(self, name: str, password: str) -> bool:
        """Return whether *password* is the password of *name*. Blocks ~50 ms unless cached."""
        if self.check_password_cache(name, password):
            return True
        with self._lock:
            user = self._users.get(name)
            stored = user.get("password") if user else None
            generation = self._generation
        try:
            ok = verify_hash(stored or _DUMMY_HASH, password) and stored is not None
        except UserStoreError as exc:
            log.error("user %r: %s", name, exc)
            return False
        if ok:
            tag = self._cache_tag(name, password)
            with self._lock:
                if generation == self._generation:
                    self._cache[name] = tag
        return ok

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked_for_update(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Lock the file against other writers, yield fresh users, write them back."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.state_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            users, _ = self._read()
            yield users
            self._write({"version": _FORMAT_VERSION, "users": users})
            users, sig = self._read()
            with self._lock:
                self._install(users, sig)
        finally:
            os.close(fd)

    def _write(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".users.json.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def add_user(self, name: str, password: str | None) -> None:
        """Create *name* if missing; set its password unless *password* is None.

        A user created with ``password=None`` can only log in with a public key.
        """
        _check_name(name)
        if password is not None and (not password or "\0" in password):
            raise UserStoreError("password must be non-empty and contain no NUL")
        new_hash = hash_password(password) if password is not None else None
        with self._locked_for_update() as users:
            user = users.setdefault(name, {"password": None, "authorized_keys": []})
            if new_hash is not None:
                user["password"] = new_hash

    def add_authorized_key(self, name: str, key_line: str) -> None:
        """Add one OpenSSH public key line to the existing user *name* (no-op if present)."""
        _check_name(name)
        key = parse_public_key(key_line)
        line = key_line.strip()
        with self._locked_for_update() as users:
            user = users.get(name)
            if user is None:
                raise UserStoreError(f"no such user {name!r}")
            keys = user.setdefault("authorized_keys", [])
            known = set()
            for existing in keys:
                with contextlib.suppress(UserStoreError):
                    known.add(parse_public_key(existing).public_data)
            if key.public_data not in known:
                keys.append(line)
