"""Loopback decided once (supervisor/loopback.py): all of 127.0.0.0/8, ::1, IPv4-mapped loopback."""

from __future__ import annotations

import pytest

from synsup.supervisor.loopback import is_loopback, reach_host, same_host


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("127.255.255.254", True), ("::1", True), ("[::1]", True),
    ("::ffff:127.0.0.1", True), ("::ffff:127.0.1.1", True), ("localhost", True), ("LocalHost", True),
    ("ip6-localhost", True), ("10.1.2.3", False), ("::ffff:10.1.2.3", False), ("0.0.0.0", False),
    ("::", False), ("128.0.0.1", False), ("synapse.example.org", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("binds, host", [
    (("0.0.0.0",), "127.0.0.1"), (("::",), "::1"), (("localhost",), "127.0.0.1"), (("::1",), "::1"),
    (("127.0.1.1",), "127.0.1.1"), (("10.0.0.5", "127.0.1.1"), "127.0.1.1"), (("::", "0.0.0.0"), "127.0.0.1"),
    (("::ffff:127.0.0.1",), "127.0.0.1"), (("10.0.0.5",), "10.0.0.5"),
])
def test_reach_host_prefers_the_loopback_address_bound(binds, host):
    assert reach_host(binds) == host


def test_same_host_counts_localhost_as_its_addresses_but_not_all_of_loopback():
    assert same_host("localhost", "127.0.0.1") and same_host("::1", "localhost")
    assert same_host("::ffff:127.0.1.1", "127.0.1.1")
    assert not same_host("127.0.1.1", "127.0.0.1")  # a socket bound to 127.0.0.1 is not reached there
