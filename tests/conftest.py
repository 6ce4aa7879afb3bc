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
