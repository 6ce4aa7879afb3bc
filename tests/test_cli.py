"""The command line contract, run as outside tools run it: ``python -m agent ...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from agent.cli import ServeOptions, build_parser, main
from agent.users import UserStore

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "agent", *args],
        input=data,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=30,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


@pytest.fixture(scope="module")
def pubkeys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    lines = [
        asyncssh.generate_private_key(alg).export_public_key().decode().strip() + " me@laptop"
        for alg in ("ssh-ed25519", "ecdsa-sha2-nistp256")
    ]
    path = tmp_path_factory.mktemp("keys") / "authorized_keys"
    path.write_text("# my keys\n\n" + "\n".join(lines) + "\n")
    return path, lines


def test_useradd_password_stdin(tmp_path: Path):
    state = tmp_path / "new" / "state"
    r = run("useradd", "--state-dir", str(state), "alice", "--password-stdin",
            stdin="Pa55 word\nsecond line ignored\n")
    assert r.returncode == 0, r.stderr
    assert "alice" in r.stdout
    assert state.stat().st_mode & 0o777 == 0o700
    users_file = state / "users.json"
    assert users_file.stat().st_mode & 0o777 == 0o600
    raw = users_file.read_text()
    assert "Pa55" not in raw
    assert json.loads(raw)["users"]["alice"]["password"].startswith("scrypt$16384$8$1$")
    store = UserStore(state)
    assert store.verify_password("alice", "Pa55 word")  # trailing newline stripped, space kept
    assert not store.verify_password("alice", "Pa55 word\n")


def test_useradd_crlf_and_no_trailing_newline(tmp_path: Path):
    assert run("useradd", "--state-dir", str(tmp_path), "a", "--password-stdin",
               stdin="one\r\n").returncode == 0
    assert run("useradd", "--state-dir", str(tmp_path), "b", "--password-stdin",
               stdin="two").returncode == 0
    store = UserStore(tmp_path)
    assert store.verify_password("a", "one")
    assert store.verify_password("b", "two")


def test_useradd_authorized_key(tmp_path: Path, pubkeys):
    path, lines = pubkeys
    r = run("useradd", "--state-dir", str(tmp_path), "bob", "--authorized-key", str(path))
    assert r.returncode == 0, r.stderr
    store = UserStore(tmp_path)
    assert store.authorized_keys("bob") == lines
    assert not store.verify_password("bob", "")
    # both options together; a second run adds to the same user
    r = run("useradd", "--state-dir", str(tmp_path), "bob", "--password-stdin",
            "--authorized-key", str(path), stdin="pw\n")
    assert r.returncode == 0, r.stderr
    store = UserStore(tmp_path)
    assert store.authorized_keys("bob") == lines
    assert store.verify_password("bob", "pw")


def test_useradd_bad_key_file_changes_nothing(tmp_path: Path):
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 notakey comment\n")
    r = run("useradd", "--state-dir", str(tmp_path / "s"), "bob", "--authorized-key", str(bad))
    assert r.returncode == 1
    assert "bad.pub:1" in r.stderr
    assert not (tmp_path / "s" / "users.json").exists()
    r = run("useradd", "--state-dir", str(tmp_path / "s"), "bob",
            "--authorized-key", str(tmp_path / "missing.pub"))
    assert r.returncode == 1
    assert "cannot read" in r.stderr


def test_useradd_usage_errors(tmp_path: Path):
    r = run("useradd", "--state-dir", str(tmp_path), "alice")
    assert r.returncode == 2
    assert "--password-stdin" in r.stderr
    r = run("useradd", "--state-dir", str(tmp_path), "1nvalid", "--password-stdin", stdin="x\n")
    assert r.returncode == 2
    assert "invalid user name" in r.stderr
    r = run("useradd", "--state-dir", str(tmp_path), "alice", "--password-stdin", stdin="\n")
    assert r.returncode == 1
    assert "no password" in r.stderr
    r = run("useradd", "--state-dir", str(tmp_path), "alice", "--password-stdin", stdin=b"\xff\n")
    assert r.returncode == 1
    assert not (tmp_path / "users.json").exists()


def test_serve_without_users_exits_2(tmp_path: Path):
    state = tmp_path / "empty"
    r = run("serve", "--state-dir", str(state), "--listen", "127.0.0.1", "--port", "0")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"no NETCONF user configured in {state}; add one with: "
        f"netconf-vrrp-agent useradd --state-dir {state} NAME --password-stdin"
    )
    # a user without password or key does not count
    UserStore(state).add_user("ghost", None)
    r = run("serve", "--state-dir", str(state), "--listen", "127.0.0.1")
    assert r.returncode == 2
    assert "no NETCONF user configured" in r.stderr


def test_serve_options_parsed_and_passed(tmp_path: Path, monkeypatch):
    """``serve`` hands a ServeOptions to agent.app.run_server (stubbed here)."""
    import types

    UserStore(tmp_path).add_user("alice", "pw")
    seen = []
    fake_app = types.ModuleType("agent.app")
    fake_app.run_server = lambda options: seen.append(options) or 0
    monkeypatch.setitem(sys.modules, "agent.app", fake_app)
    monkeypatch.setattr("agent.cli._setup_logging", lambda level: None)
    assert main(["serve", "--state-dir", str(tmp_path), "--listen", "127.0.0.1",
                 "--port", "8300", "--netns", "r1", "--config", "/etc/agent.conf",
                 "--log-level", "debug"]) == 0
    assert seen == [ServeOptions(state_dir=tmp_path, listen="127.0.0.1", port=8300, netns="r1",
                                 config=Path("/etc/agent.conf"), log_level="DEBUG")]
    seen.clear()
    assert main(["serve", "--state-dir", str(tmp_path)]) == 0
    assert seen == [ServeOptions(state_dir=tmp_path, listen="0.0.0.0", port=830, netns=None,
                                 config=None, log_level="INFO")]


@pytest.mark.parametrize("args", [["serve"], ["serve", "--state-dir", "x", "--port", "70000"],
                                  ["serve", "--state-dir", "x", "--log-level", "chatty"], []])
def test_serve_usage_errors(args: list[str]):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(args)
    assert exc.value.code == 2
