"""Fixtures of the engine tests that run fake Synapse processes."""

from __future__ import annotations

import os

import pytest
from helpers import FAKE_SYNAPSE, Deployment


@pytest.fixture
def fake_env(short_dir, monkeypatch):
    """A fake-Synapse deployment's files and state dir; its processes record their events in
    `d.control` and behave as `d.behave(...)` says."""
    d = Deployment(os.path.join(short_dir, "d"), os.path.join(short_dir, "s"))
    monkeypatch.setenv("PYTHONPATH", FAKE_SYNAPSE)
    monkeypatch.setenv("SYNAPSE_FAKE_CONTROL", d.control)
    os.makedirs(d.state_dir)
    yield d
    d.postgres.close()
