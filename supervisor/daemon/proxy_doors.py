"""The proxies the front door can keep (`--proxy KIND:PATH`): HAProxy through its runtime API,
which drains, and nginx through a routes file and `nginx -s reload`, which cannot."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
from collections import defaultdict
from collections.abc import Callable

from ..errors import SynsupError
from ..source import Loaded, ProxyLayout, ProxyServer
from .front_door import FrontDoor, ProxyError, ProxyState
from .haproxy_runtime import HAProxyRuntime, Slot

KINDS = ("haproxy", "nginx")
NGINX_RELOAD = "nginx -s reload"
# as units/route_render.py writes them: down at the first refused connection (a crash's requests go elsewhere)
SERVER_OPTIONS = "check inter 2s observe layer4 error-limit 1 on-error mark-down"


def parse_proxy(value: str) -> tuple[str, str]:
    """`haproxy:/run/haproxy/admin.sock` (or HOST:PORT), `nginx:/etc/nginx/conf.d/synapse-routes.conf`."""
    kind, _, target = value.partition(":")
    if kind not in KINDS or not target:
        raise SynsupError(f"--proxy {value}: expected haproxy:/path/to/admin.sock or "
                          "nginx:/path/to/conf.d/synapse-routes.conf")
    return kind, target


def front_door_of(args: argparse.Namespace, layout_of: Callable[[Loaded], ProxyLayout]) -> FrontDoor | None:
    """The front door `start --proxy` asks for (None without --proxy); SynsupError if the option is bad."""
    if not getattr(args, "proxy", None):
        return None
    kind, target = parse_proxy(args.proxy)
    if args.drain_timeout < 0:
        raise SynsupError(f"--drain-timeout {args.drain_timeout:g}: give seconds, 0 or more")
    proxy = HAProxyDoor(target) if kind == "haproxy" else NginxDoor(target, args.proxy_reload)
    return FrontDoor(proxy, args.drain_timeout, layout_of)


class HAProxyDoor:
    kind, drains = "haproxy", True

    def __init__(self, target: str, runtime: HAProxyRuntime | None = None) -> None:
        self.target = target
        self.runtime = runtime or HAProxyRuntime(target)
        self.slots: dict[str, list[Slot]] = {}  # unit -> its server lines
        self.instance = ""  # which HAProxy process was last checked (`restarted` compares)

    def _fix(self) -> str:
        return f"run HAProxy with the config `synsup routes --format haproxy --admin-socket {self.target}` prints"

    async def check(self, layout: ProxyLayout | None) -> None:
        """HAProxy answers and has what the layout needs: its backends and the route map."""
        try:
            self.instance = await self.runtime.identify()
            await self._read_slots()
            backends, maps = await self.runtime.backends(), await self.runtime.maps()
        except ProxyError as e:
            raise ProxyError(f"{e}; {self._fix()}") from None
        missing = sorted({s.backend for s in layout.servers} - backends) if layout else []
        if missing:
            raise ProxyError(f"HAProxy at {self.target} has no backend {', '.join(missing)}; {self._fix()}")
        if layout and layout.routes and layout.route_map not in maps:
            raise ProxyError(f"HAProxy at {self.target} has no map {layout.route_map} (its config routes without "
                             f"synsup's map); {self._fix()}")

    async def restarted(self) -> bool:
        """Another HAProxy answers than the one last checked (restarted or reloaded: it lost what synsup told it)."""
        return await self.runtime.identify() != self.instance

    async def _read_slots(self) -> None:
        found: dict[str, list[Slot]] = defaultdict(list)
        for slot in await self.runtime.slots():
            found[slot.server].append(slot)
        self.slots = dict(found)

    def serves(self, name: str) -> bool:
        return name in self.slots

    async def set_state(self, name: str, state: ProxyState) -> None:
        for slot in self.slots.get(name, []):
            await self.runtime.changed(f"set server {slot.backend}/{slot.server} state {state.value}")
            if state is ProxyState.READY:  # synsup's own probes passed: no wait for HAProxy's next checks
                await self.runtime.command(f"set server {slot.backend}/{slot.server} health up")

    async def in_flight(self, name: str) -> int:
        held = await self.runtime.sessions()
        return sum(held.get((s.backend, s.server), 0) for s in self.slots.get(name, []))

    async def apply(self, layout: ProxyLayout) -> None:
        """Servers added and re-addressed at runtime (`route` removes those the layout no longer has)."""
        have = {(s.backend, s.server): s for ss in self.slots.values() for s in ss}
        for server in layout.servers:
            slot = have.get((server.backend, server.name))
            if slot is None:
                await self._add(server)
            elif slot.address and slot.address != server.address and not server.address.startswith("unix@"):
                host, _, port = server.address.rpartition(":")
                await self.runtime.changed(f"set server {server.backend}/{server.name} addr {host} port {port}")
        await self._read_slots()

    async def route(self, layout: ProxyLayout) -> None:
        """The route map made equal to the layout's, then the servers no route sends to any more removed."""
        if layout.routes:
            have = await self.runtime.map_entries(layout.route_map)
            for key, backend in layout.routes.items():
                if have.get(key) != backend:
                    verb = "set" if key in have else "add"
                    await self.runtime.changed(f"{verb} map {layout.route_map} {key} {backend}")
            for key in have.keys() - layout.routes.keys():
                await self.runtime.changed(f"del map {layout.route_map} {key}")
        wanted = {(s.backend, s.name) for s in layout.servers}
        for slot in [s for ss in self.slots.values() for s in ss if (s.backend, s.server) not in wanted]:
            await self.runtime.changed(f"set server {slot.backend}/{slot.server} state maint")
            await self.runtime.changed(f"del server {slot.backend}/{slot.server}")
        await self._read_slots()

    async def _add(self, s: ProxyServer) -> None:
        """A dynamic server starts in maintenance: the front door sets it ready once its unit is."""
        await self.runtime.changed(f"add server {s.backend}/{s.name} {s.address} {SERVER_OPTIONS}"
                                   + (" backup" if s.backup else ""))
        await self.runtime.command(f"enable health {s.backend}/{s.name}")


class NginxDoor:
    """nginx has no runtime API: the routes file is written (atomically, the previous one kept as
    FILE.bak) and nginx reloaded gracefully when the topology changes. No drain."""

    kind, drains = "nginx", False

    def __init__(self, target: str, reload_command: str = NGINX_RELOAD) -> None:
        self.target, self.reload_command = target, reload_command
        self.names: set[str] = set()

    async def check(self, layout: ProxyLayout | None) -> None:
        if not os.path.isdir(os.path.dirname(os.path.abspath(self.target))):
            raise ProxyError(f"{self.target}: its directory does not exist; create it and include it in nginx's http {{}}")

    def serves(self, name: str) -> bool:
        return name in self.names

    async def set_state(self, name: str, state: ProxyState) -> None:
        pass  # nginx learns a server is down by failing to reach it (proxy_next_upstream retries)

    async def in_flight(self, name: str) -> int:
        return 0

    async def restarted(self) -> bool:
        return False  # nginx reads the routes file whenever it starts

    async def route(self, layout: ProxyLayout) -> None:
        pass  # the routes file `apply` wrote holds them

    async def apply(self, layout: ProxyLayout) -> None:
        self.names = {s.name for s in layout.servers}
        previous = _read(self.target)
        if previous == layout.nginx:
            return
        _write_keeping_backup(self.target, layout.nginx)
        problem = await _run(self.reload_command)
        if problem:  # the file on disk stays the one nginx runs
            os.replace(self.target + ".bak", self.target) if previous is not None else os.unlink(self.target)
            raise ProxyError(f"`{self.reload_command}` failed ({problem}); {self.target} is back as it was")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write_keeping_backup(path: str, text: str) -> None:
    import tempfile  # only --proxy nginx writes files: not in every daemon (with random, shutil: 1 MB)
    temporary = ""
    try:
        fd, temporary = tempfile.mkstemp(prefix=".synsup-", dir=os.path.dirname(os.path.abspath(path)))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        if os.path.exists(path):  # FILE.bak: the previous file, replaced in one step too
            with open(path, "rb") as old, open(path + ".bak.new", "wb") as backup:
                backup.write(old.read())
            os.replace(path + ".bak.new", path + ".bak")
        os.replace(temporary, path)
    except OSError as e:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
        raise ProxyError(f"cannot write {path}: {e.strerror or e}") from None


async def _run(command: str) -> str:
    """'' when the command succeeded, else its first line of error."""
    try:
        process = await asyncio.create_subprocess_exec(*shlex.split(command), stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    except (OSError, TimeoutError) as e:
        return str(e)
    if process.returncode == 0:
        return ""
    return (err.decode(errors="replace").strip().splitlines() or [f"exit {process.returncode}"])[-1]
