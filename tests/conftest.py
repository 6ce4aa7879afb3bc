"""Shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def schema():
    from agent.datastore.schema import Schema

    return Schema.load()


@pytest.fixture
def server(schema, tmp_path):
    from agent.server import NetconfServer

    return NetconfServer(schema, tmp_path)


@pytest.fixture
def client(server):
    from inproc import LocalClient

    return LocalClient(server)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """A real agent process for the whole test module (reset it with ``agent.reset()``)."""
    from agentproc import AgentProcess

    a = AgentProcess(tmp_path_factory.mktemp("agent"))
    a.start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def fresh(agent):
    """The module's agent with empty datastores."""
    agent.reset()
    return agent


@pytest.fixture
def c(fresh):
    """A raw-client session on a fresh agent."""
    with fresh.raw() as client:
        yield client


@pytest.fixture
def c2(fresh):
    """A second raw-client session on the same fresh agent."""
    with fresh.raw() as client:
        yield client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201 - pytest hook
    """When a test that uses a VRRP lab (``tests/vrrplab.py``) fails, attach the tail of
    each router's keepalived log and its current VRRP states to the report, so a failure
    seen once in CI can be diagnosed from the log alone."""
    report = yield
    lab = item.funcargs.get("lab") if hasattr(item, "funcargs") else None
    if report.failed and call.when == "call" and lab is not None and hasattr(lab, "routers"):
        for r in lab.routers:
            ka = getattr(r, "ka", None)
            if ka is None:
                continue
            try:
                tail = "\n".join(ka.log_path.read_text().splitlines()[-60:])
            except OSError as exc:
                tail = f"(no keepalived log: {exc})"
            try:
                states = {name: d["data"].get("state") for name, d in r.dump().items()}
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                states = {"error": str(exc)}
            report.sections.append((f"keepalived {r.ns} (pid {ka.pid}, restarts {ka.restarts})",
                                    f"states: {states}\n{tail}"))
    return report
