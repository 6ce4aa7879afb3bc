"""Run the real agent (``python -m agent serve``) as a subprocess for SSH-level tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ncraw import RawClient

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    """One agent on 127.0.0.1 with its own state directory and a random password."""

    def __init__(
        self,
        state_dir: Path,
        *,
        user: str = "admin",
        config: Path | None = None,
        netns: str | None = None,
    ) -> None:
        """``netns``: the namespace the agent manages with its Linux backend; without one
        the agent runs datastore-only (``--backend none``) so that a test never touches the
        host's own interfaces."""
        self.state_dir = Path(state_dir)
        self.netns = netns
        self.user = user
        self.password = secrets.token_urlsafe(12)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.log = self.state_dir / "agent.log"
        subprocess.run(
            [sys.executable, "-m", "agent", "useradd", "--state-dir", str(self.state_dir),
             user, "--password-stdin"],
            input=self.password + "\n", text=True, check=True, capture_output=True,
        )

    def start(self, timeout: float = 20.0) -> None:
        args = [sys.executable, "-m", "agent", "serve", "--state-dir", str(self.state_dir),
                "--listen", self.host, "--port", str(self.port)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        args += ["--netns", self.netns] if self.netns else ["--backend", "none"]
        logf = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("agent did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def raw(self, **kw) -> RawClient:
        return RawClient.connect(self.host, self.port, self.user, password=self.password, **kw)

    def ncclient(self, **kw):
        from ncclient import manager

        return manager.connect(
            host=self.host, port=self.port, username=self.user, password=self.password,
            hostkey_verify=False, look_for_keys=False, allow_agent=False, timeout=30, **kw,
        )

    def reset(self) -> None:
        """Empty running, candidate and startup (between tests sharing one agent)."""
        with self.raw() as c:
            for target in ("running", "candidate"):
                r = c.rpc(
                    f"<copy-config><target><{target}/></target>"
                    f"<source><config/></source></copy-config>"
                )
                assert r.find(f"{{{NC_NS}}}ok") is not None, r
            c.rpc("<delete-config><target><startup/></target></delete-config>")
            c.rpc("<discard-changes/>")
