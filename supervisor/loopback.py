"""Whether a host is this machine only, and where a listener is reached from this machine: one
answer for every place that asks (the check's rules, probes, metrics targets, cluster.yaml).
Loopback is all of 127.0.0.0/8 (Debian puts the host name on 127.0.1.1), ::1, an IPv4-mapped
::ffff:127.x.y.z, and the names that mean this host; decided by `ipaddress`, never a fixed list."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
LOCALHOST = frozenset({"localhost", "127.0.0.1", "::1"})  # the name and what it resolves to
WILDCARD_REACH = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # a wildcard bind, reached over loopback


def canonical(host: str) -> str:
    """The host as one spelling: no brackets, lower case, an IP address compressed and an
    IPv4-mapped IPv6 address as IPv4, a loopback name as `localhost`."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return "localhost"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return name
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, ::ffff:127.x.y.z, localhost: an address that reaches this host only."""
    name = canonical(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_host(a: str, b: str) -> bool:
    """Whether a connection to `a` reaches a socket bound to `b` (the name localhost and the
    addresses it resolves to count as one)."""
    ca, cb = canonical(a), canonical(b)
    return ca == cb or (ca in LOCALHOST and cb in LOCALHOST)


def reach_host(binds: Iterable[str]) -> str:
    """The host to connect to from this machine for a listener bound to `binds`: a loopback
    address it binds (localhost as 127.0.0.1), else loopback for a wildcard, else its first."""
    given = list(binds)
    hosts = [canonical(b) for b in given]
    for host in hosts:
        if is_loopback(host):
            return "127.0.0.1" if host == "localhost" else host
    for wildcard, reached in WILDCARD_REACH.items():
        if wildcard in hosts:
            return reached
    return given[0]
