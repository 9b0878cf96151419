"""contrib/demo/cluster_show.py (issue 18's show on three network namespaces) runs to its end and
shows what it says: the blocked plan waiting for c (exit 2), the recovered cluster (exit 0, every
unit ready), the failed step blocked with b's reason and no plan after `synsup cluster abort`;
nothing of its own left behind. Skipped (with the reason) without root, `ip netns` or etcd."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
from helpers import REPO
from network_namespaces import why_no_namespaces

pytestmark = pytest.mark.integration

SCRIPT = os.path.join(REPO, "contrib", "demo", "cluster_show.py")


def sections(out: str) -> dict[str, list[dict[str, Any]]]:
    """Section number -> its command blocks: {"command", "output", "code"} (code None: not shown)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for part in re.split(r"^## ", out, flags=re.MULTILINE)[1:]:
        number = part.split(".", 1)[0]
        blocks = found.setdefault(number, [])
        for body in re.findall(r"^```\n(.*?)^```$", part, flags=re.MULTILINE | re.DOTALL):
            lines = body.rstrip("\n").split("\n")
            if not lines[0].startswith("$ "):
                continue
            code = re.fullmatch(r"\(exit (\d+)\)", lines[-1])
            blocks.append({"command": lines[0][2:], "code": int(code[1]) if code else None,
                           "output": "\n".join(lines[1:-1] if code else lines[1:])})
    return found


def status_json(blocks: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return [(b["code"], json.loads(b["output"])) for b in blocks
            if re.search(r"synsup status --cluster \S+ --json$", b["command"])]


def test_sections_reads_the_commands_their_output_and_exit_codes() -> None:
    out = "# x\n\n## 2. two\n\n```\n$ synsup status --cluster $RUN/c.yaml --json\n{\"plan\": null}\n(exit 1)\n```\n" \
          "note\n```\n$ kill -KILL 5    # c's daemon\n```\n"
    assert sections(out) == {"2": [{"command": "synsup status --cluster $RUN/c.yaml --json", "output": '{"plan": null}',
                                    "code": 1}, {"command": "kill -KILL 5    # c's daemon", "output": "", "code": None}]}
    assert status_json(sections(out)["2"]) == [(1, {"plan": None})]


def test_the_show_prints_the_blocked_plan_the_recovery_and_the_abort_and_leaves_nothing_behind() -> None:
    reason = why_no_namespaces() or ("" if shutil.which("etcd") else "etcd (Debian's etcd-server) is not installed")
    if reason:
        pytest.skip(f"contrib/demo/cluster_show.py needs three network namespaces and etcd: {reason}")
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=240, cwd=REPO)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stderr == "", done.stderr
    run_dir = re.search(r"\$RUN is (\S+),", done.stdout)[1]
    assert not os.path.exists(run_dir), "the temp dir is removed"
    namespaces = re.findall(r"^node \w: namespace (\S+),", done.stdout, re.MULTILINE)
    bridge = re.search(r"^bridge (\S+) ", done.stdout, re.MULTILINE)[1]
    assert len(namespaces) == 3 and not set(namespaces) & set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()), "namespaces deleted"
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0, "bridge deleted"
    found = sections(done.stdout)
    assert list(found) == ["0", "1", "2", "3", "4"], done.stdout

    assert [b["code"] for b in found["0"]] == [0, 0, 0], "three `synsup start --cluster` (a, b, c)"
    assert [re.search(r"--node (\w)", b["command"])[1] for b in found["0"]] == ["a", "b", "c"]
    [(code, ready)] = status_json(found["1"])
    assert code == 0 and {u["state"] for u in ready["units"]} == {"ready"} and len(ready["units"]) == 8

    [(code, blocked)] = status_json(found["2"])
    assert code == 2 and blocked["plan"]["waiting_for"] == ["c"] and blocked["plan"]["reason"] == "node c is down"
    assert blocked["plan"]["phase"].startswith("start ")
    assert [n["up"] for n in blocked["nodes"]] == [True, True, False]
    table = next(b for b in found["2"] if b["command"].endswith("status --cluster $RUN/d/cluster.yaml"))
    assert table["code"] == 2 and "waiting for c (node c is down)" in table["output"]
    assert "kill -KILL" in found["2"][0]["command"]
    running_on = re.search(r"^c's processes run on without their daemon: (.*)  \(t=", done.stdout, re.MULTILINE)[1]
    assert re.fullmatch(r"(\w+ pid \d+ \(alive\))(, \w+ pid \d+ \(alive\)){2}", running_on), running_on

    now = re.search(r"^c's processes now: (.*)  \(t=", done.stdout, re.MULTILINE)[1]
    assert re.fullmatch(r"(\w+ pid \d+ \(kept: [^)]*\))(, \w+ pid \d+ \(kept: [^)]*\)){2}", now), (
        "c's returning daemon keeps the processes its predecessor started with the new map: " + now)

    start_c, *_ = found["3"]
    assert "--node c" in start_c["command"] and start_c["code"] == 0
    [(code, recovered)] = status_json(found["3"])
    assert code == 0 and recovered["plan"] is None
    assert {u["name"]: (u["node"], u["state"]) for u in recovered["units"] if u["node"] == "b"} == {
        "persister1": ("b", "ready"), "persister2": ("b", "ready"), "persister3": ("b", "ready")}
    assert {u["state"] for u in recovered["units"]} == {"ready"} and len(recovered["units"]) == 9
    assert re.search(r"^\| persister3 \| b \| ready \| \d+ \| persister1, persister2, persister3 \|$", done.stdout,
                     re.MULTILINE), "the applied topology: persister3 runs with the new map"
    assert "an older-map writer ran (whole run, every host): none" in done.stdout

    (code, failed), (after_code, after) = status_json(found["4"])
    assert code == 2 and failed["plan"]["reason"].startswith("node b: ") and "persister4" in failed["plan"]["reason"]
    [abort] = [b for b in found["4"] if " cluster abort " in b["command"]]
    assert abort["code"] == 0 and re.match(r"plan \S+ aborted at phase start ", abort["output"])
    assert after["plan"] is None and after_code == 1, "no plan after the abort; persister4 not ready: degraded"
