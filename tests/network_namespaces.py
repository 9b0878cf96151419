"""Hosts for the multi-host tests: network namespaces made by the test, each with a veth pair
into one bridge in the root namespace, addresses of a private /24 of their own (10.231.X.0/24,
X chosen per run, so that two runs on one machine do not meet); the bridge has .254. Everything
is torn down afterwards, even on failure: every process left in a namespace is killed, then the
namespaces and the bridge are deleted (the veth pairs go with them). Needs root and iproute2."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def why_no_namespaces() -> str:
    """"" when the test can make namespaces here, else why not (the skip reason)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (the multi-host test makes hosts with `ip netns`)"
    if os.geteuid() != 0:
        return "making network namespaces (`ip netns add`) needs root"
    return ""


@dataclass
class Network:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    subnet: int = field(default_factory=lambda: random.randint(1, 250))
    hosts: dict[str, str] = field(default_factory=dict)  # node name -> its namespace
    addresses: dict[str, str] = field(default_factory=dict)  # node name -> its address
    links: dict[str, str] = field(default_factory=dict)  # node name -> its end of the veth pair (inside)

    @property
    def bridge(self) -> str:
        return f"ssbr{self.tag}"

    @property
    def bridge_address(self) -> str:
        return f"10.231.{self.subnet}.254"

    def add_bridge(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> str:
        index = len(self.hosts) + 1
        namespace, outside, inside = f"ss{self.tag}{name}", f"ssv{self.tag}{index}", f"ssp{self.tag}{index}"
        ip("netns", "add", namespace)
        self.hosts[name] = namespace
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", outside, "master", self.bridge, "up")
        ip("link", "set", inside, "netns", namespace)
        self.links[name] = inside
        self.addresses[name] = address = f"10.231.{self.subnet}.{index}"
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        ip("-n", namespace, "link", "set", inside, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        return namespace

    def cut_off(self, name: str) -> None:
        """A partition: the host's link goes down (it reaches no other host, nor the store)."""
        ip("-n", self.hosts[name], "link", "set", self.links[name], "down")

    def reconnect(self, name: str) -> None:
        ip("-n", self.hosts[name], "link", "set", self.links[name], "up")

    def pids(self, name: str) -> list[int]:
        done = ip("netns", "pids", self.hosts[name], check=False)
        return [int(p) for p in done.stdout.split()]

    def tear_down(self) -> None:
        for name, namespace in self.hosts.items():
            for pid in self.pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ip("netns", "del", namespace, check=False)
        ip("link", "del", self.bridge, check=False)


def network(*names: str) -> Iterator[Network]:
    """For a fixture: `yield from network("a", "b", "c")`; skipped when namespaces cannot be made."""
    reason = why_no_namespaces()
    if reason:
        pytest.skip(reason)
    net = Network()
    try:
        try:
            net.add_bridge()
            for name in names:
                net.add_host(name)
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot make network namespaces here: {' '.join(e.cmd)}: {e.stderr.strip()}")
        yield net
    finally:
        net.tear_down()
