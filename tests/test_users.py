"""The user store: hashes, keys, atomic file, cache."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from pathlib import Path

import asyncssh
import pytest

from agent import users as users_mod
from agent.users import UserStore, UserStoreError, hash_password, valid_user_name, verify_hash


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [
        asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        + f" user{i}@host"
        for i in range(2)
    ]


@pytest.fixture
def count_scrypt(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = users_mod._scrypt

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(users_mod, "_scrypt", spy)
    return calls


def test_hash_format_and_parameters():
    stored = hash_password("pa55word")
    m = re.fullmatch(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", stored)
    assert m, stored
    assert (int(m[1]), int(m[2]), int(m[3])) == (2**14, 8, 1)
    assert len(base64.b64decode(m[4])) == 16
    assert len(base64.b64decode(m[5])) == 32
    assert hash_password("pa55word") != stored  # fresh salt
    assert verify_hash(stored, "pa55word")
    assert not verify_hash(stored, "pa55wordx")


def test_verify_hash_rejects_absurd_parameters():
    with pytest.raises(UserStoreError):
        verify_hash("scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44, "x")
    with pytest.raises(UserStoreError):
        verify_hash("md5$abc", "x")


def test_add_user_file_contents_and_mode(tmp_path: Path):
    store = UserStore(tmp_path / "state")
    assert not store.has_users()
    store.add_user("alice", "s3cret-pass")
    path = tmp_path / "state" / "users.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    raw = path.read_text()
    assert "s3cret-pass" not in raw
    doc = json.loads(raw)
    assert doc["version"] == 1
    assert doc["users"]["alice"]["password"].startswith("scrypt$16384$8$1$")
    assert doc["users"]["alice"]["authorized_keys"] == []
    assert store.has_users()
    assert store.names() == ["alice"]
    # only users.json and the lock file: no temp files left behind
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        ".users.json.lock",
        "users.json",
    ]


def test_verify_password(tmp_path: Path):
    store = UserStore(tmp_path)
    store.add_user("alice", "right")
    store.add_user("bob", None)
    assert store.verify_password("alice", "right")
    assert not store.verify_password("alice", "wrong")
    assert not store.verify_password("alice", "")
    assert not store.verify_password("nobody", "right")
    assert not store.verify_password("bob", "")
    assert not store.verify_password("bob", "right")
    assert UserStore(tmp_path).verify_password("alice", "right")  # persisted


def test_unknown_user_costs_a_scrypt_too(tmp_path: Path, count_scrypt):
    store = UserStore(tmp_path)
    store.add_user("alice", "right")
    count_scrypt.clear()
    assert not store.verify_password("nobody", "x")
    assert len(count_scrypt) == 1


def test_password_change(tmp_path: Path):
    store = UserStore(tmp_path)
    store.add_user("alice", "old")
    assert store.verify_password("alice", "old")
    store.add_user("alice", "new")
    assert store.verify_password("alice", "new")
    assert not store.verify_password("alice", "old")  # cache dropped on change
    store.add_user("alice", None)  # None keeps the password
    assert store.verify_password("alice", "new")


@pytest.mark.parametrize("password", ["", "a\0b"])
def test_bad_passwords_rejected(tmp_path: Path, password: str):
    with pytest.raises(UserStoreError):
        UserStore(tmp_path).add_user("alice", password)


@pytest.mark.parametrize(
    "name", ["a", "_", "alice", "A.b-c_9", "x" * 32, "_admin", "Z"]
)
def test_valid_names(name: str):
    assert valid_user_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "1abc", "-a", ".a", "x" * 33, "a b", "a/b", "al\nice", "alice\n", "é", "a:b", "a@b"],
)
def test_invalid_names(tmp_path: Path, name: str):
    assert not valid_user_name(name)
    with pytest.raises(UserStoreError):
        UserStore(tmp_path).add_user(name, "pw")


def test_authorized_keys(tmp_path: Path, keys: list[str]):
    store = UserStore(tmp_path)
    with pytest.raises(UserStoreError, match="no such user"):
        store.add_authorized_key("bob", keys[0])
    store.add_user("bob", None)
    assert not store.has_users()  # no password, no key: cannot log in
    store.add_authorized_key("bob", keys[0] + "\n")
    store.add_authorized_key("bob", keys[1])
    bare = " ".join(keys[0].split()[:2])  # same key without comment: not added twice
    store.add_authorized_key("bob", bare)
    assert store.authorized_keys("bob") == keys
    assert store.authorized_keys("nobody") == []
    assert store.has_users()
    assert UserStore(tmp_path).authorized_keys("bob") == keys
    for bad in ["", "ssh-ed25519 AAAAnotbase64", "hello world", keys[0] + "\n" + keys[1]]:
        with pytest.raises(UserStoreError):
            store.add_authorized_key("bob", bad)
    assert store.authorized_keys("bob") == keys


def test_cache_makes_repeat_logins_cheap(tmp_path: Path, count_scrypt):
    store = UserStore(tmp_path)
    store.add_user("alice", "right")
    count_scrypt.clear()
    assert not store.check_password_cache("alice", "right")
    assert store.verify_password("alice", "right")
    assert len(count_scrypt) == 1
    t0 = time.perf_counter()
    for _ in range(100):
        assert store.verify_password("alice", "right")
        assert store.check_password_cache("alice", "right")
    per_call = (time.perf_counter() - t0) / 200
    assert len(count_scrypt) == 1
    assert per_call < 0.001
    # wrong passwords never come from the cache
    assert not store.check_password_cache("alice", "wrong")
    assert not store.verify_password("alice", "wrong")
    assert len(count_scrypt) == 2


def test_cache_dropped_when_file_changes_elsewhere(tmp_path: Path):
    server_view = UserStore(tmp_path)
    UserStore(tmp_path).add_user("alice", "old")
    assert server_view.verify_password("alice", "old")  # picks up the new file
    assert server_view.check_password_cache("alice", "old")
    UserStore(tmp_path).add_user("alice", "new")  # another process changes the password
    assert not server_view.check_password_cache("alice", "old")
    assert not server_view.verify_password("alice", "old")
    assert server_view.verify_password("alice", "new")


def test_malformed_file(tmp_path: Path):
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(UserStoreError):
        UserStore(tmp_path)
    path.write_text(json.dumps({"version": 1, "users": {"bad name": {}}}))
    with pytest.raises(UserStoreError):
        UserStore(tmp_path)
    path.write_text(json.dumps({"version": 2, "users": {}}))
    with pytest.raises(UserStoreError):
        UserStore(tmp_path)


def test_file_broken_while_running_fails_closed(tmp_path: Path):
    store = UserStore(tmp_path)
    store.add_user("alice", "right")
    assert store.verify_password("alice", "right")
    os.unlink(tmp_path / "users.json")
    (tmp_path / "users.json").write_text("garbage")
    assert not store.verify_password("alice", "right")
    assert not store.has_users()


def test_reload(tmp_path: Path):
    store = UserStore(tmp_path)
    other = UserStore(tmp_path)
    other.add_user("carol", "pw")
    store.reload()
    assert store.names() == ["carol"]


def test_concurrent_writers_do_not_lose_users(tmp_path: Path, monkeypatch):
    # Cheap hashes: this is about the file lock, not scrypt.
    monkeypatch.setattr(users_mod, "hash_password", lambda pw: "scrypt$1024$1$1$AAAA$" + "A" * 44)
    errors = []

    def add(i: int) -> None:
        try:
            UserStore(tmp_path).add_user(f"user{i}", "pw")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert UserStore(tmp_path).names() == sorted(f"user{i}" for i in range(8))
