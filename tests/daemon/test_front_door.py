"""The front door (`start --proxy haproxy:SOCKET`) against a fake runtime-API socket that records
every command: drain -> wait for the server's requests -> stop -> start -> ready around a restart,
maint at once on a crash, a bad socket one warning while the units run on, topology kept equal."""

from __future__ import annotations

import asyncio
import os

import pytest
from fakes import FakeSpawner

from synsup.supervisor.daemon.daemon import Daemon
from synsup.supervisor.daemon.front_door import FrontDoor
from synsup.supervisor.daemon.proxy_doors import HAProxyDoor
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.source import Loaded, ProxyLayout, ProxyServer
from synsup.supervisor.spec import UnitSpec
from synsup.supervisor.statedir import StateDir

S = UnitState
TIMING = Timing(liveness_interval=None, notify_grace=0.0)
SPECS = [UnitSpec(name="main", argv=("fake", "main"), notify=False),
         UnitSpec(name="worker", argv=("fake", "worker"), dependencies=("main",), step=1, notify=False)]
LAYOUT = ProxyLayout([ProxyServer("main", "main", "127.0.0.1:8008"), ProxyServer("client", "worker", "127.0.0.1:8081"),
                      ProxyServer("client", "main", "127.0.0.1:8008", backup=True)])
SERVER = "check inter 2s observe layer4 error-limit 1 on-error mark-down"
TYPING_BY_MAIN = ProxyLayout(LAYOUT.servers, routes={"typing": "main", "client": "client", "sync": "none"},
                             route_map="/dev/null")
TYPING_BY_WORKER = ProxyLayout([*LAYOUT.servers, ProxyServer("typing", "worker", "127.0.0.1:8081")],
                               routes={"typing": "typing", "client": "client", "sync": "none"}, route_map="/dev/null")


@pytest.fixture(autouse=True)
def no_subreaper(monkeypatch):
    monkeypatch.setattr("synsup.supervisor.daemon.daemon.become_subreaper", lambda: False)


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def told(door: FrontDoor, state: str, unit: str = "worker"):
    return lambda: door.applied.get(unit) is not None and door.applied[unit].value == state


class FakeRuntimeApi:
    """HAProxy's runtime API as far as the front door uses it; `log` holds (command, worker_exited)."""

    def __init__(self, path: str, servers: list[tuple[str, str]], answers: str = "Name: HAProxy\n",
                 backends: tuple[str, ...] = (), route_map: str = "/dev/null") -> None:
        self.path, self.info, self.pid = path, answers, 100
        self.servers = {key: {"admin": 0, "addr": "127.0.0.1:1"} for key in servers}
        self.backends = list(dict.fromkeys([be for be, _ in servers] + list(backends)))
        self.route_map, self.maps = route_map, {}
        self.sessions: dict[tuple[str, str], int] = {}
        self.log: list[tuple[str, bool]] = []
        self.worker_exited = lambda: False

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._answer, self.path)

    async def close(self) -> None:
        """After the connections the daemon left (its front door is cancelled mid-command) are answered."""
        await until(lambda: self.server._active_count == 0)
        self.server.close()
        await self.server.wait_closed()

    async def _answer(self, reader, writer) -> None:
        try:
            line = (await reader.readline()).decode().strip()
            self.log.append((line, self.worker_exited()))
            writer.write(self._reply(line).encode())
            await writer.drain()
        finally:
            writer.close()

    def _reply(self, line: str) -> str:
        words = line.split()
        if line == "show info":
            return self.info + f"Pid: {self.pid}\nStart_time_sec: 1796124242\n"
        if line == "show backend":
            return "# name\n" + "".join(f"{be}\n" for be in self.backends)
        if words[:2] == ["show", "map"]:
            if len(words) == 2:
                return f"# id (file) description\n5 ({self.route_map}) pattern loaded from file\n"
            return "".join(f"0x{i} {key} {value}\n" for i, (key, value) in enumerate(self.maps.items()))
        if words[1:3] == ["map", "/dev/null"]:
            return self._map(words[0], words[3:])
        if line == "show servers state":
            rows = [f"1 {be} 1 {sv} {v['addr'].split(':')[0]} 2 {v['admin']} 1 1 0 0 0 0 0 0 0 0 - {v['addr'].split(':')[1]}"
                    for (be, sv), v in self.servers.items()]
            return "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight " \
                   "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state " \
                   "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port\n" + "\n".join(rows) + "\n"
        if line == "show stat":
            rows = [f"{be},{sv},0,0,{self._held(be, sv)}," for be, sv in self.servers]
            return "# pxname,svname,qcur,qmax,scur,\n" + "\n".join(rows) + "\n"
        if words[:2] == ["set", "server"] and words[3] == "state":
            be, sv = words[2].split("/")
            self.servers[(be, sv)]["admin"] = {"ready": 0, "drain": 8, "maint": 1}[words[4]]
        if words[:2] == ["set", "server"] and words[3] == "addr":
            self.servers[tuple(words[2].split("/"))]["addr"] = f"{words[4]}:{words[6]}"
        if words[:2] == ["add", "server"]:
            be, sv = words[2].split("/")
            self.servers[(be, sv)] = {"admin": 1, "addr": words[3]}
            return "New server registered.\n"
        if words[:2] == ["del", "server"]:
            del self.servers[tuple(words[2].split("/"))]
            return "Server deleted.\n"
        return ""

    def _map(self, verb: str, args: list[str]) -> str:
        if verb != "add" and args[0] not in self.maps:
            return "Key not found.\n"
        if verb == "del":
            del self.maps[args[0]]
        else:
            self.maps[args[0]] = args[1]
        return ""

    def _held(self, backend: str, server: str) -> int:
        """A drained server's requests end one per look."""
        held = self.sessions.get((backend, server), 0)
        if held and self.servers[(backend, server)]["admin"] & 8:
            self.sessions[(backend, server)] = held - 1
        return held

    def changes(self, server: str = "worker") -> list[str]:
        return [c for c, _ in self.log if c.startswith(("set server", "add server", "del server")) and f"/{server} " in c]

    def commands(self) -> list[str]:
        """What changed HAProxy, in order."""
        return [c for c, _ in self.log if not c.startswith("show ")]


def run_daemon(short_dir, api: FakeRuntimeApi, scenario, layout=LAYOUT, drain_timeout=5.0, specs=SPECS) -> Daemon:
    """`layout`: a ProxyLayout, or a list whose last one is the current config's."""
    async def main():
        await api.start()
        spawner, stop = FakeSpawner(), asyncio.Event()
        door = FrontDoor(HAProxyDoor(api.path), drain_timeout,
                         lambda loaded: layout[-1] if isinstance(layout, list) else layout)
        d = Daemon(Loaded(specs), StateDir(os.path.join(short_dir, "s")), os.path.join(short_dir, "logs"),
                   timing=TIMING, spawner=spawner, stop_trigger=stop.wait, front_door=door)
        run = asyncio.ensure_future(d.run())
        try:
            await until(lambda: d.supervisor is not None and all(
                u.state is S.READY for u in d.supervisor.units.values()))
            await until(told(door, "ready"))
            await scenario(d, door, spawner)
        finally:
            stop.set()
            await run
            await api.close()
        return d
    return asyncio.run(main())


@pytest.mark.parametrize("restart", ["restart", "restart_rolling"])
def test_restart_drains_waits_for_requests_stops_then_ready_once_ready(short_dir, restart):
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker"),
                                                                 ("client", "main")])

    async def scenario(d, door, spawner):
        first = spawner.children[1]
        api.worker_exited = lambda: first.exited
        api.log.clear()
        api.sessions[("client", "worker")] = 3
        await getattr(d.supervisor, restart)(["worker"])
        await until(told(door, "ready"))

    run_daemon(short_dir, api, scenario)
    assert api.changes() == ["set server client/worker state drain", "set server client/worker state maint",
                             "set server client/worker state ready", "set server client/worker health up",
                             "set server client/worker state maint"]  # the daemon's stop: no drain
    stats = [exited for command, exited in api.log if command == "show stat"]
    assert len(stats) == 4 and not any(stats)  # 3, 2, 1, 0 requests: the old process ran until the last
    assert api.sessions[("client", "worker")] == 0


def test_crash_sets_maint_at_once_then_ready_when_ready_again(short_dir):
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker")])

    async def scenario(d, door, spawner):
        api.log.clear()
        spawner.children[1].exit(1)
        await until(told(door, "maint"))
        assert d.supervisor.units["worker"].state is not S.READY or len(spawner.children) == 2
        await until(lambda: len(spawner.children) == 3 and told(door, "ready")())

    run_daemon(short_dir, api, scenario)
    assert api.changes()[:3] == ["set server client/worker state maint", "set server client/worker state ready",
                                 "set server client/worker health up"]
    assert not any(c == "show stat" for c, _ in api.log)  # a crash waits for nothing


def test_drain_is_bounded_by_the_drain_timeout(short_dir):
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker")])

    async def scenario(d, door, spawner):
        api.sessions[("client", "worker")] = 1_000_000  # never ends
        began = asyncio.get_running_loop().time()
        await d.supervisor.restart(["worker"])
        assert 0.3 <= asyncio.get_running_loop().time() - began < 5
        assert spawner.children[1].exited and d.supervisor.units["worker"].state is S.READY

    run_daemon(short_dir, api, scenario, drain_timeout=0.3)


@pytest.mark.parametrize("problem, said", [
    ("missing", "cannot reach"), ("foreign", "is not HAProxy's runtime API"), ("backends", "has no backend client"),
    ("map", "has no map /dev/null")])
def test_bad_socket_is_one_warning_with_the_fix_and_units_run_on(short_dir, problem, said):
    path = os.path.join(short_dir, "api.sock")
    api = FakeRuntimeApi(path if problem != "missing" else os.path.join(short_dir, "other.sock"),
                         [("main", "main")] + ([] if problem == "backends" else [("client", "worker")]),
                         answers="Name: something else\n" if problem == "foreign" else "Name: HAProxy\n",
                         route_map="/etc/haproxy/other.map" if problem == "map" else "/dev/null")
    seen = {}

    async def main():
        await api.start()
        door, stop = FrontDoor(HAProxyDoor(path), 1.0, lambda loaded: TYPING_BY_MAIN), asyncio.Event()
        d = Daemon(Loaded(SPECS), StateDir(os.path.join(short_dir, "s")), os.path.join(short_dir, "logs"),
                   timing=TIMING, spawner=FakeSpawner(), stop_trigger=stop.wait, front_door=door)
        run = asyncio.ensure_future(d.run())
        await until(lambda: d.supervisor is not None and d.supervisor.all_ready() and door.checked,
                    100_000)
        await d.supervisor.restart(["worker"])  # no drain to wait for: the restart is not delayed
        seen.update(d.status())
        stop.set()
        await run
        await api.close()

    asyncio.run(main())
    proxy = seen["daemon"]["proxy"]
    assert proxy["ok"] is False and said in proxy["error"] and path in proxy["error"]
    assert "synsup routes --format haproxy" in proxy["error"]  # the fix
    assert all(u["state"] == "ready" for u in seen["units"])


def test_topology_change_adds_readdresses_and_removes_servers_at_runtime(short_dir):
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker"),
                                                                 ("client", "old"), ("sync", "main")])
    moved = ProxyLayout([ProxyServer("main", "main", "127.0.0.1:8008"), ProxyServer("client", "worker", "127.0.0.1:9000"),
                         ProxyServer("sync", "worker", "127.0.0.1:9000")])

    async def scenario(d, door, spawner):
        await until(lambda: ("client", "old") not in api.servers)

    run_daemon(short_dir, api, scenario, layout=moved)
    commands = [c for c, _ in api.log]
    assert "set server client/worker addr 127.0.0.1 port 9000" in commands
    assert "add server sync/worker 127.0.0.1:9000 check inter 2s observe layer4 error-limit 1 on-error mark-down" \
           in commands
    assert commands.index("set server client/old state maint") < commands.index("del server client/old")
    assert "del server sync/main" in commands and set(api.servers) == {(s.backend, s.name) for s in moved.servers}


def relaid_out(d: Daemon, door: FrontDoor, layouts: list[ProxyLayout], layout: ProxyLayout) -> None:
    """A reload that changed the topology: the daemon runs a new config whose layout is `layout`."""
    layouts.append(layout)
    d.current = Loaded(SPECS)
    door.phase_changed()


def test_typing_writer_move_is_a_server_and_a_map_entry_at_runtime_never_a_reload(short_dir):
    """Issue 19: typing moving from main to a worker (and back) is told to HAProxy at runtime: the
    server is added and ready before the map sends typing to its backend, and the map leaves it
    before it is removed."""
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker"),
                                                                 ("client", "main")], backends=("typing", "sync"))
    layouts = [TYPING_BY_MAIN]
    seen = {}

    async def scenario(d, door, spawner):
        await until(lambda: api.maps == TYPING_BY_MAIN.routes)  # the map filled at start
        api.log.clear()
        relaid_out(d, door, layouts, TYPING_BY_WORKER)
        await until(lambda: api.maps["typing"] == "typing")
        seen["there"] = api.commands()
        api.log.clear()
        relaid_out(d, door, layouts, TYPING_BY_MAIN)
        await until(lambda: ("typing", "worker") not in api.servers)
        seen["back"] = api.commands()

    run_daemon(short_dir, api, scenario, layout=layouts)
    there, back = seen["there"], seen["back"]
    assert there[:2] == [f"add server typing/worker 127.0.0.1:8081 {SERVER}", "enable health typing/worker"]
    assert there.index("set server typing/worker state ready") < there.index("set map /dev/null typing typing")
    assert [c for c in there if "map" in c] == ["set map /dev/null typing typing"]
    removal = ["set map /dev/null typing main", "set server typing/worker state maint", "del server typing/worker"]
    assert [c for c in back if c in removal] == removal and [c for c in back if "map" in c] == removal[:1]
    assert not any("reload" in c for c in there + back)



def test_haproxy_restarted_while_healthy_is_told_everything_again(short_dir, monkeypatch):
    """Issue 19: a restarted HAProxy (another pid in `show info`) lost the servers, states and map
    synsup gave it; the next look (every RECHECK s) finds it and tells it all again, no failed command needed."""
    monkeypatch.setattr("synsup.supervisor.daemon.front_door.RECHECK", 0.2)
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker"),
                                                                 ("client", "main")], backends=("typing", "sync"))

    async def scenario(d, door, spawner):
        await until(lambda: ("typing", "worker") in api.servers and api.maps == TYPING_BY_WORKER.routes)
        api.pid, api.maps = 101, {}  # restarted from its file: no dynamic server, an empty map
        del api.servers[("typing", "worker")]
        await until(lambda: ("typing", "worker") in api.servers and api.maps == TYPING_BY_WORKER.routes)
        await until(lambda: api.servers[("typing", "worker")]["admin"] == 0)  # ready again

    run_daemon(short_dir, api, scenario, layout=TYPING_BY_WORKER)


def test_drain_while_event_persistence_pauses_is_short(short_dir, monkeypatch):
    """Issue 19 (persister change: 16 s of stall behind HAProxy, 12 s direct): while an event
    persister is down, the requests a worker holds wait on persistence, which comes back only
    after that worker stops; its drain waits PAUSED_DRAIN, not --drain-timeout, and HAProxy
    retries the requests the stop cuts."""
    monkeypatch.setattr("synsup.supervisor.daemon.front_door.PAUSED_DRAIN", 0.3)
    specs = [*SPECS, UnitSpec(name="persister", argv=("fake", "persister"), dependencies=("main",), notify=False)]
    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker"),
                                                                 ("client", "main")])
    took = {}

    async def restart_timed(d, label):
        began = asyncio.get_running_loop().time()
        await d.supervisor.restart(["worker"])
        took[label] = asyncio.get_running_loop().time() - began

    async def scenario(d, door, spawner):
        api.sessions[("client", "worker")] = 1_000_000  # never end
        await restart_timed(d, "persisting")
        await d.supervisor.hold(["persister"])
        await restart_timed(d, "paused")

    run_daemon(short_dir, api, scenario, drain_timeout=1.5, specs=specs,
               layout=ProxyLayout(LAYOUT.servers, persisters=["persister"]))
    assert took["persisting"] >= 1.5 and took["paused"] < 1.2, took


def test_a_restart_answers_once_the_proxy_has_been_told_the_unit_is_ready(short_dir):
    """The reply to `synsup restart` shows the proxy as it is: `ready`, not the `maint` of a moment ago."""
    from synsup.supervisor.daemon.handlers import Requests

    api = FakeRuntimeApi(os.path.join(short_dir, "api.sock"), [("main", "main"), ("client", "worker")])
    replies: list[dict] = []

    async def scenario(d, door, spawner):
        async def send(reply) -> None:
            replies.append(reply if isinstance(reply, dict) else reply.as_json())
        await Requests(d).handle({"cmd": "restart", "units": ["worker"]}, send)

    run_daemon(short_dir, api, scenario)
    (unit,) = [u for u in replies[-1]["units"] if u["name"] == "worker"]
    assert (unit["state"], unit["proxy"]) == ("ready", "ready")
