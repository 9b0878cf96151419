"""Issue 18 shown on three hosts: three network namespaces a, b and c (tests/network_namespaces.py),
one etcd on the bridge address, one `synsup start --cluster F --node N` per namespace with the
fake Synapse (tests/cluster_hosts.py's Cluster: main and Redis on a, the event persisters on b,
the other workers on c). Prints, each under a heading with the exact command lines run (the
run's temp dir shortened to $RUN, `$PYTHON -m synsup` to `synsup`), in Markdown:

  1. `synsup status --cluster` (human and --json) once every unit of every node is ready;
  2. persister3 added on b while c's daemon is killed (SIGKILL, its processes run on): the plan
     blocks, status --cluster says `waiting for c` and why (exit 2);
  3. c's daemon started again: the plan finishes (exit 0), and the applied topology;
  4. a step that fails (persister4 never gets ready on b): blocked with b's reason, then
     `synsup cluster abort`, then status (no plan).

Everything (daemons, processes, etcd, namespaces, bridge, temp dir) is torn down at the end,
even on failure, Ctrl-C or SIGTERM. Needs root, iproute2 and Debian's etcd-server (as the
three-host tests). Exit 0 once all four steps were shown; 1 when a step did not come to pass
(the reason on stderr). tests/cluster/test_cluster_show.py runs it.

  .venv/bin/python contrib/demo/cluster_show.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))

from cluster_hosts import PLACEMENT, TTL, Cluster, all_ready, maps_overlapping, process_runs  # noqa: E402
from etcd_server import EtcdServer  # noqa: E402
from helpers import Deployment, alive, binary, free_ports, listener, processes_with, wait_for, worker  # noqa: E402
from network_namespaces import Network, why_no_namespaces  # noqa: E402

Report = dict[str, Any]


class Show:
    """Runs the commands and prints them, with their output and exit code, as Markdown."""

    def __init__(self, cluster: Cluster, run_dir: str) -> None:
        self.cluster, self.run_dir = cluster, run_dir
        self.began = time.monotonic()

    def shown(self, argv: list[str]) -> str:
        text = shlex.join(argv).replace(f"{sys.executable} -m synsup", "synsup")
        return text.replace(self.run_dir, "$RUN")

    def heading(self, title: str) -> None:
        print(f"\n## {title}\n", flush=True)

    def block(self, argv: list[str], output: str, code: int | None, note: str = "") -> None:
        print("```")
        print(f"$ {self.shown(argv)}" + (f"    # {note}" if note else ""))
        text = output.rstrip("\n").replace(self.run_dir, "$RUN")
        if text:
            print(text)
        if code is not None:
            print(f"(exit {code})")
        print("```", flush=True)

    def say(self, text: str) -> None:
        print(f"{text.replace(self.run_dir, '$RUN')}  (t={time.monotonic() - self.began:.1f}s)\n", flush=True)

    def synsup(self, node: str | None, *args: str, note: str = "") -> subprocess.CompletedProcess[str]:
        done = self.cluster.run(node, *args)
        self.block(self.cluster.synsup(node, *args), done.stdout + done.stderr, done.returncode, note)
        return done

    def status(self) -> Report:
        """`synsup status --cluster` shown twice: the table, then --json (the one returned, with its exit code)."""
        self.synsup(None, "status", "--cluster", self.cluster.file)
        done = self.synsup(None, "status", "--cluster", self.cluster.file, "--json")
        return {"code": done.returncode, **json.loads(done.stdout)}

    def start(self, *nodes: str) -> None:
        started = {node: self.cluster.start(node) for node in nodes}  # together: b waits for a's main, c for b
        for node, process in started.items():
            output = process.communicate(timeout=120)[0]
            self.block(list(process.args), output, process.returncode, f"in namespace {node}")
            if process.returncode != 0:
                raise Failed(f"`synsup start` on {node} exited {process.returncode}")


class Failed(Exception):
    """A step of the show did not come to pass."""


def until(cluster: Cluster, condition: Callable[[int, Report], bool], timeout: float, what: str) -> None:
    try:
        wait_for(lambda: cluster.status_when(condition), timeout=timeout, what=what)
    except (TimeoutError, AssertionError) as e:
        raise Failed(f"{what}: not within {timeout:g} s ({e})") from None


def started_with(cluster: Cluster, names: list[str], events_map: tuple[str, ...]) -> dict[str, int] | None:
    """name -> pid of `names`' running processes, once each runs with `events_map` (else None)."""
    running = {r["name"]: r for r in process_runs(cluster.d.events()) if r["exit"] is None and r["name"] in names}
    if sorted(running) != sorted(names) or any(r["map"] != events_map for r in running.values()):
        return None
    return {name: r["pid"] for name, r in running.items()}


def add_persister(cluster: Cluster, name: str) -> None:
    """`name` on node b, in the events map (as Cluster.add_persister_on_b does for persister3)."""
    port = free_ports(1)[0]
    cluster.d.shared["instance_map"][name] = {"host": cluster.hosts.addresses["b"], "port": port}
    cluster.d.shared["stream_writers"]["events"].append(name)
    cluster.d.workers[name] = worker(name, listener(port, "replication") | {"bind_addresses": ["0.0.0.0"]})


def write_everywhere(show: Show, name: str) -> None:
    for node in PLACEMENT:
        show.cluster.write_files(node)
    config, _ = show.cluster.files["b"]
    show.say(f"(the config management's run) {name} added to homeserver.yaml's instance_map and "
             f"stream_writers.events, workers/{name}.yaml written, on a, b and c "
             f"({os.path.dirname(os.path.dirname(config))}/host-{{a,b,c}})")


def topology(show: Show, report: Report) -> None:
    """The applied topology: the config digest every node reports, where each unit runs, and the
    events map each running fake Synapse process started with (from their events log)."""
    runs = process_runs(show.cluster.d.events())
    maps = {r["pid"]: r["map"] for r in runs if r["exit"] is None}
    print(f"applied config digest: {report['config']['applied']}; nodes: "
          + ", ".join(f"{n['name']} {(n['config_digest'] or '-')[:12]}" for n in report["nodes"]) + "\n")
    print("| unit | node | state | pid | events map it runs with |")
    print("|---|---|---|---|---|")
    for u in report["units"]:
        events_map = maps.get(u["pid"])
        print(f"| {u['name']} | {u['node']} | {u['state']} | {u['pid'] or '-'} | "
              f"{', '.join(events_map) if events_map else '-'} |")
    overlaps = maps_overlapping(runs)
    print(f"\nprocesses with a newer events map started while an older-map writer ran (whole run, every host): "
          f"{'; '.join(overlaps) or 'none'}", flush=True)
    if overlaps:
        raise Failed(f"the events maps overlapped: {overlaps}")


def show_all(show: Show, net: Network, etcd: EtcdServer) -> None:
    cluster = show.cluster
    show.heading("0. Set-up: three namespaces, one etcd, one synsup daemon each")
    print("```")
    for node, namespace in net.hosts.items():
        print(f"node {node}: namespace {namespace}, address {net.addresses[node]}, runs {', '.join(PLACEMENT[node])}")
    print(f"bridge {net.bridge} {net.bridge_address}; etcd {etcd.url} (Debian's etcd-server, data on tmpfs)")
    with open(cluster.file) as f:
        print(f"$ cat $RUN/d/cluster.yaml\n{f.read().rstrip()}")
    print("```", flush=True)
    show.start(*PLACEMENT)

    show.heading("1. Every unit of every node ready")
    until(cluster, lambda code, r: code == 0 and all_ready(r), 30, "every unit ready (status --cluster exit 0)")
    show.status()

    show.heading("2. persister3 added on b; c's daemon killed mid-plan (its processes run on): the plan blocks")
    for name in PLACEMENT["c"]:  # c's workers take a while to get ready: the plan's start phase waits for them
        cluster.d.behave(name, ready_delay=5)
    add_persister(cluster, "persister3")
    write_everywhere(show, "persister3")
    new_map = ("persister1", "persister2", "persister3")
    c_running: dict[str, int] = wait_for(lambda: started_with(cluster, PLACEMENT["c"], new_map), timeout=60,
                                         what="c's workers started with the new events map (the plan's start phase)")
    c_daemon = cluster.local("c")["daemon"]["pid"]
    os.kill(c_daemon, signal.SIGKILL)
    show.block(["ip", "netns", "exec", net.hosts["c"], "kill", "-KILL", str(c_daemon)], "", None,
               "c's synsup daemon, once the plan's start phase has started c's workers")
    until(cluster, lambda code, r: code == 2 and r["plan"]["waiting_for"] == ["c"], TTL + 30,
          "the plan blocked on c (exit 2)")
    show.say(f"c's lease ({TTL} s) has ended; the plan waits for c:")
    show.status()
    show.say("c's processes run on without their daemon: " + ", ".join(
        f"{name} pid {pid} ({'alive' if alive(pid) else 'GONE'})" for name, pid in c_running.items()))

    show.heading("3. c's daemon started again: it adopts its processes, then carries out its step; the plan finishes")
    show.start("c")
    until(cluster, lambda code, r: code == 0 and r["plan"] is None and all_ready(r)
          and "persister3" in [u["name"] for u in r["units"]], 60, "the plan done, every unit ready (exit 0)")
    report = show.status()
    adopted = {u["name"]: u["pid"] for u in report["units"] if u["node"] == "c"}
    def fate(name: str, pid: int) -> str:
        if c_running.get(name) == pid:
            return "kept: adopted by the returning daemon, already on the new map, so its step was done"
        return f"not {c_running.get(name)}: adopted by the returning daemon, then started again by the plan's start step"
    show.say("c's processes now: " + ", ".join(f"{name} pid {pid} ({fate(name, pid)})" for name, pid in adopted.items()))
    print("The applied topology:\n")
    topology(show, report)

    show.heading("4. A step that fails: persister4 never gets ready on b; the admin aborts the plan")
    cluster.d.behave("persister4", refuse=True)
    add_persister(cluster, "persister4")
    write_everywhere(show, "persister4")
    until(cluster, lambda code, r: code == 2 and r["plan"]["reason"].startswith("node b: "), 60,
          "the plan blocked with b's reason (exit 2)")
    show.status()
    show.synsup(None, "cluster", "abort", "--cluster", cluster.file)
    show.status()
    show.say("what already ran keeps running (persister1..3 ready); nothing goes forward (c's workers are not "
             "started beside a persister that failed); the files stay as they are until the admin changes them")


def tear_down(cluster: Cluster | None, deployment: Deployment | None, etcd: EtcdServer | None, net: Network,
              run_dir: str) -> None:
    """Every step tried even when one fails: daemons and their processes, etcd, namespaces (with
    whatever still runs in them), the bridge, the temp dir."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the tearing down short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    steps: list[Callable[[], Any]] = []
    if cluster is not None:
        steps.append(cluster.stop)  # `synsup stop` with a daemon gone stops what it left too
    if deployment is not None:
        steps += [lambda: wait_for(lambda: not processes_with(deployment.control), timeout=20,
                                   what="every process of the deployment to be gone"),
                  deployment.postgres.close]
    if etcd is not None:
        steps.append(etcd.stop)
    steps += [net.tear_down, lambda: shutil.rmtree(run_dir, ignore_errors=True)]
    for step in steps:
        try:
            step()
        except Exception as e:  # the next steps still run
            print(f"cluster_show.py: tearing down: {e}", file=sys.stderr)


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    reason = why_no_namespaces() or ("" if shutil.which("etcd") else "etcd is not installed (Debian's etcd-server)")
    if reason:
        print(f"cluster_show.py: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # even when started with SIGINT ignored (a background job)
    net = Network()
    run_dir = tempfile.mkdtemp(prefix="ss", dir="/tmp")  # short: UNIX socket paths
    etcd = deployment = cluster = None
    try:
        net.add_bridge()
        for node in PLACEMENT:
            net.add_host(node)
        etcd = EtcdServer(binary("etcd"), host=net.bridge_address)
        wait_for(etcd.healthy, 30, "etcd to answer /health")
        deployment = Deployment(os.path.join(run_dir, "d"), os.path.join(run_dir, "s"))
        cluster = Cluster(deployment, net, etcd)
        print(f"# synsup on three hosts (issue 18): $RUN is {run_dir}, synsup is `{sys.executable} -m synsup` with the "
              "fake Synapse on PYTHONPATH (tests/fake)", flush=True)
        show_all(Show(cluster, run_dir), net, etcd)
        return 0
    except Failed as e:
        print(f"cluster_show.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cluster_show.py: interrupted; tearing down", file=sys.stderr)
        return 130
    finally:
        tear_down(cluster, deployment, etcd, net, run_dir)


if __name__ == "__main__":
    sys.exit(main())
