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
