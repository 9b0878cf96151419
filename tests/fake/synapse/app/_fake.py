"""What the fake does: read the -c files like Synapse, bind the listeners, answer /health,
send READY=1, honour SIGTERM, and misbehave on request.

Behaviour comes from $SYNAPSE_FAKE_CONTROL/<instance>.json, read at start:
  {"refuse": true}            exit 1 at once (with a message on stderr); so does a log config file
                              (log_config, worker_log_config) that says `_fake_refuse` (a broken log config)
  {"refuse_version": "1.2.3"} the same, when it runs as that version
  {"ready_delay": 0.5}        bind and send READY=1 only after this many seconds
  {"busy": 0.6}               first compute for this many seconds of CPU (as Synapse importing its code)
  {"hang": true}              never bind, never send READY=1
  {"crash_after": 0.5}        exit 1 this long after becoming ready
  {"ignore_term": true}       ignore SIGTERM
  {"no_notify": true}         never send READY=1
  {"grandchild": "group"}     leave a sleeping grandchild holding stdout, in the unit's group
  {"grandchild": "setsid"}    the same, in a session of its own (escaping the group)
  {"answer_delay": 0.2}       answer every request but /health this many seconds late (requests in flight)
  {"spam": 4096}              write this many bytes of output every 10 ms once ready
  {"helpers": 40}             once ready, start this many short-lived double-forked helpers
                              (`sh -c "sleep 0.01 &"`), one every 20 ms; records "helpers" after
  {"setsid_helpers": 60}      once ready, every 50 ms for good, fork a child that forks a grandchild
                              and exits; the grandchild (reparented to synsup) calls setsid() and
                              double-forks, then exits; records "setsid_helpers" after that many
  {"replication_secret": "x"} check replication requests against this secret instead of the config's
                              (a process started with another secret)
`metrics` listeners (with enable_metrics) answer any path with a Prometheus exposition.
An http listener with the `replication` resource answers GET /_synapse/replication/... as Synapse's
does: 200 {"updates": [], ...} when `Authorization: Bearer <worker_replication_secret>` matches (or
no secret is configured), else 500 (Synapse: RuntimeError "Invalid Authorization header"); 404 on
a listener without that resource.
Answers carry `X-Fake-Synapse: <instance>`. Health answers 500 while $SYNAPSE_FAKE_CONTROL/<instance>.unhealthy exists.
Every start, ready and exit is appended to $SYNAPSE_FAKE_CONTROL/events.jsonl, with the
version ($SYNAPSE_FAKE_VERSION). The database is $SYNAPSE_FAKE_CONTROL/schema.json: main
migrates it at start, a worker refuses one older than its schema (synapse.storage).
"""

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import sys
import time

import yaml

import synapse


def load_config(paths):
    config = {}
    for path in paths:
        if os.path.isdir(path):
            files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".yaml"))
        else:
            files = [path]
        for file in files:
            with open(file) as f:
                config.update(yaml.safe_load(f) or {})
    return config


class Fake:
    def __init__(self, config, is_main):
        self.config = config
        self.is_main = is_main
        self.name = "main" if is_main else str(config.get("worker_name") or config.get("worker_app"))
        self.control = os.environ.get("SYNAPSE_FAKE_CONTROL", "")
        self.behaviour = self._read_behaviour()
        self.stopping = asyncio.Event()

    def _read_behaviour(self):
        if not self.control:
            return {}
        try:
            with open(os.path.join(self.control, f"{self.name}.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def log_config_broken(self):
        path = self.config.get("log_config" if self.is_main else "worker_log_config")
        try:
            with open(path) as f:
                return "_fake_refuse" in f.read()
        except (TypeError, OSError):
            return False

    def record(self, event, **fields):
        if not self.control:
            return
        line = json.dumps({"name": self.name, "event": event, "pid": os.getpid(), "t": time.time(), **fields})
        with open(os.path.join(self.control, "events.jsonl"), "a") as f:
            f.write(line + "\n")

    def listeners(self):
        items = self.config.get("listeners" if self.is_main else "worker_listeners") or []
        wanted = ("http", "metrics") if self.config.get("enable_metrics") else ("http",)
        return [l for l in items if l.get("type", "http") in wanted]

    def replication_answer(self, head, listener):
        """Synapse's answer to a replication request (synapse/replication/http/_base.py)."""
        names = {n for r in listener.get("resources") or [] for n in r.get("names") or []}
        if "replication" not in names:
            return b"404 Not Found", b'{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}'
        secret = self.behaviour.get("replication_secret", self.config.get("worker_replication_secret"))
        headers = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
        auth = [v.strip() for k, _, v in headers if k.strip().lower() == b"authorization"]
        parts = auth[0].split(b" ") if len(auth) == 1 else []
        if secret and not (len(parts) == 2 and parts[0] == b"Bearer" and parts[1].decode("ascii") == secret):
            self.record("replication_refused")
            return b"500 Internal Server Error", b'{"errcode":"M_UNKNOWN","error":"Internal server error"}'
        return b"200 OK", b'{"updates":[],"upto_token":0,"limited":false}'

    async def health(self, reader, writer, listener=None):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.split(b" ", 2)[1:2] and head.split(b" ", 2)[1].startswith(b"/_synapse/replication/"):
                status, body = self.replication_answer(head, listener or {})
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                return
            if b"metrics" in head.split(b"\r\n", 1)[0]:
                body = f'fake_synapse_up{{name="{self.name}"}} 1\n'.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                await writer.drain()
                return
            if b" /health" not in head.split(b"\r\n", 1)[0]:
                await asyncio.sleep(self.behaviour.get("answer_delay", 0))
            sick = self.control and os.path.exists(os.path.join(self.control, f"{self.name}.unhealthy"))
            status = b"500 Internal Server Error" if sick else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\nX-Fake-Synapse: " + self.name.encode()
                         + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def bind(self):
        servers = []
        for listener in self.listeners():
            handler = functools.partial(self.health, listener=listener)
            if listener.get("path"):
                servers.append(await asyncio.start_unix_server(handler, listener["path"]))
                continue
            addresses = listener.get("bind_addresses") or [listener.get("bind_address") or "127.0.0.1"]
            for address in addresses:
                servers.append(await asyncio.start_server(handler, address, listener["port"], reuse_address=True))
        return servers

    def notify(self, message):
        address = os.environ.get("NOTIFY_SOCKET")
        if not address or self.behaviour.get("no_notify"):
            return
        try:  # as Synapse's sdnotify: a supervisor gone (its socket with it) is no reason to die
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(message.encode(), address)
        except OSError as e:
            print(f"Unable to send notification to systemd: {e}", file=sys.stderr, flush=True)

    def grandchild(self, setsid):
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                 start_new_session=setsid, stdout=sys.stdout, stderr=sys.stderr)
        self.record("grandchild", grandchild=child.pid)

    async def spam(self, size):
        line = (b"x" * 99 + b"\n") * max(1, size // 100)
        while True:
            os.write(1, line)
            await asyncio.sleep(0.01)

    async def helpers(self, count):
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.01 &")
            await proc.wait()  # the helper's parent is gone: the helper is reparented to synsup
            await asyncio.sleep(0.02)
        self.record("helpers", count=count)

    async def setsid_helpers(self, count):
        forked = 0
        while True:
            child = os.fork()
            if child == 0:
                try:
                    if os.fork() == 0:  # the grandchild: reparented to synsup once its parent exits
                        os.setsid()  # a session (and group) of its own, as its leader
                        if os.fork() == 0:
                            os._exit(0)
                        os._exit(0)
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
            forked += 1
            if forked == count:
                self.record("setsid_helpers", count=count)
            await asyncio.sleep(0.05)

    def compute(self, seconds):
        """Keep a core busy for `seconds` of this process's CPU time, then record when it ended."""
        until = time.process_time() + seconds
        while time.process_time() < until:
            sum(range(1000))
        self.record("computed")

    async def run(self):
        b = self.behaviour
        self.record("start", version=synapse.__version__,
                    events_writers=(self.config.get("stream_writers") or {}).get("events"),
                    config=sorted(self.config.get("_fake_tags", [])))
        if b.get("refuse") or b.get("refuse_version") == synapse.__version__ or self.log_config_broken():
            print(f"fake synapse {self.name}: refusing to start as asked", file=sys.stderr)
            return 1
        from synapse.storage.prepare_database import refusal
        problem = refusal(self.is_main)
        if problem:
            print(f"synapse.storage.prepare_database.PrepareDatabaseException: {problem}", file=sys.stderr)
            self.record("exit", code=1)
            return 1
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: None if b.get("ignore_term") else self.stopping.set())
        loop.add_signal_handler(signal.SIGHUP, lambda: self.record("sighup"))
        if b.get("busy"):
            self.compute(float(b["busy"]))
        if b.get("hang"):
            await self.stopping.wait()
            self.record("exit", code=0)
            return 0
        await asyncio.sleep(b.get("ready_delay", 0))
        servers = await self.bind()
        if b.get("grandchild"):
            self.grandchild(b["grandchild"] == "setsid")
        if b.get("spam"):
            asyncio.get_running_loop().create_task(self.spam(int(b["spam"])))
        if b.get("helpers"):
            asyncio.get_running_loop().create_task(self.helpers(int(b["helpers"])))
        if b.get("setsid_helpers"):
            asyncio.get_running_loop().create_task(self.setsid_helpers(int(b["setsid_helpers"])))
        self.record("ready")  # before READY=1: once synsup hears it, the record must be there
        self.notify(f"READY=1\nMAINPID={os.getpid()}")
        print(f"fake synapse {self.name} ready", file=sys.stderr, flush=True)
        if "crash_after" in b:
            try:
                await asyncio.wait_for(self.stopping.wait(), b["crash_after"])
            except TimeoutError:
                print(f"fake synapse {self.name}: crashing as asked", file=sys.stderr)
                self.record("exit", code=1)
                return 1
        await self.stopping.wait()
        for server in servers:
            server.close()
        self.record("exit", code=0)
        return 0


def main(is_main):
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config-path", action="append", default=[])
    args, _ = parser.parse_known_args()
    fake = Fake(load_config(args.config_path), is_main)
    sys.exit(asyncio.run(fake.run()))
