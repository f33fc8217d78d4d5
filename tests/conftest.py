"""Shared fixtures of the whole suite."""

import pytest

from helpers import node_fault_env


@pytest.fixture
def node_fault(monkeypatch):
    """Set a node fault for every process the test starts: ``node_fault('fail', 1)``."""
    def set_fault(kind, index, seconds=None):
        for key, value in node_fault_env(kind, index, seconds).items():
            monkeypatch.setenv(key, value)
    return set_fault
