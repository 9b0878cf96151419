"""Fixtures of the store tests: one real etcd per test module, and a two-node cluster whose keys
live under a prefix of the test's own, with a lease of TTL seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from etcd_server import EtcdServer, running_etcd

from synsup.supervisor.cluster_config import ClusterConfig, Node, StoreConfig

TTL = 2  # the tests that wait for a lease to end use the same number


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    yield from running_etcd()


@pytest.fixture
def cluster(etcd: EtcdServer) -> ClusterConfig:
    """Two nodes, a and b, keys under a prefix of this test's own, a lease of TTL s."""
    store = StoreConfig((etcd.url,), f"/test/{uuid.uuid4().hex}/", TTL)
    return ClusterConfig("cluster.yaml", "test", store, {"a": Node("a", "10.0.0.1"), "b": Node("b", "10.0.0.2")}, {})
