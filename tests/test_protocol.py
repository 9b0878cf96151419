"""The control protocol's replies (issue 17): each is a dataclass whose `as_json()` is the line on
the wire, and `read_reply` (the one place a client reads a line) gives back the same object, so
the bytes a client prints (`status --json`) are the bytes the daemon sent."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import pytest

from synsup.supervisor.protocol import (
    DaemonStatus,
    OperationReply,
    ReexecReply,
    Refusal,
    ReloadOutcome,
    ReloadResult,
    ReopenedReply,
    StatusReply,
    StoppedReply,
    StopReply,
    UnitChange,
    UnitReport,
    UnitStatus,
    UpgradePlanReply,
    UpgradeProgress,
    UpgradeResult,
    read_reply,
)

UNIT = UnitStatus("main", "main", "synapse", 0, "ready", 12, 0, 100.0, 5.5, None, "ok", None,
                  {"code": 1, "signal": None, "at": 90.0, "oom_killed": False}, None, "boom", 90.0, None, False,
                  None, None, "1.140.0", None)
REPORT = UnitReport(**UNIT.as_json(), python="/venv/bin/python", config_files=["/s/config/1/main.yaml"],
                    rss_bytes=1 << 20, cpu_percent=0.5)
DAEMON = DaemonStatus(7, "1.0", "running", 2, None, None, None, None, 50.0, False, {"at": 1.0, "result": "applied"},
                      None, None, [], None)
STATUS = StatusReply(DAEMON, [REPORT])
PROXIED = StatusReply(dataclasses.replace(DAEMON, proxy={"kind": "haproxy", "ok": True}),
                      [dataclasses.replace(REPORT, proxy="ready")])
UPGRADE = dict(at=1.0, code_name="Synapse", from_version="1.1", to_version="1.2", summary=["s"])

REPLIES = [
    ("status", STATUS), ("status", PROXIED), ("pause", STATUS), ("watch", STATUS),
    ("watch", UnitChange(UNIT, "running", {"name": "restart", "started_at": 3.0})),
    ("restart", OperationReply(DAEMON, [REPORT])), ("restart", OperationReply(DAEMON, [REPORT], halted_at=["main"])),
    ("stop", OperationReply(DAEMON, [REPORT], warnings=["pusher1 is the only running member"])),
    ("stop", StopReply(["workers", "main"])), ("stop", StoppedReply()),
    ("reload", ReloadOutcome(ReloadResult.APPLIED, ["restart main: x"], generation=3)),
    ("reload", ReloadOutcome(ReloadResult.PARTIAL, ["restart main: x"], unit="main", error="not ready")),
    ("reload", ReloadOutcome(ReloadResult.PLAN, ["no changes"], dry_run=True)),
    ("upgrade", UpgradeProgress("migrate ...")),
    ("upgrade", UpgradePlanReply("plan", [], "Synapse", "1.1", "1.2", ["s"], ["migrate"], ["restart main"])),
    ("upgrade", UpgradeResult(**UPGRADE, result="upgraded", actions=["restart main"], python=None)),
    ("upgrade", UpgradeResult(**UPGRADE, result="rejected", error="e", errors=["e"])),
    ("upgrade", UpgradeResult(**UPGRADE, result="failed", error="exit code 1")),
    ("upgrade", UpgradeResult(**UPGRADE, result="partial", unit="main", error="e", actions=[], note="n")),
    ("reexec", ReexecReply(7)), ("reopen_logs", ReopenedReply()), ("status", Refusal("synsup is stopping")),
]


@pytest.mark.parametrize(("cmd", "reply"), REPLIES, ids=lambda r: type(r).__name__ if not isinstance(r, str) else r)
def test_a_reply_line_reads_back_as_the_object_the_daemon_built(cmd, reply) -> None:
    line = json.dumps(reply.as_json())
    read = read_reply(cmd, json.loads(line))
    assert read == reply and json.dumps(read.as_json()) == line


def test_the_status_line_keeps_its_keys_and_their_order() -> None:
    """The keys `status --json` prints, in the order the dict-built replies had them."""
    line = STATUS.as_json()
    assert list(line) == ["ok", "daemon", "units"]
    assert list(line["daemon"]) == ["pid", "version", "state", "config_generation", "config_on_disk",
                                    "partial_upgrade", "installed_code", "reload_error", "image_started_at",
                                    "paused", "last_reload", "last_upgrade", "operation", "queued", "proxy"]
    core = ["name", "kind", "app", "step", "state", "pid", "restarts", "since", "uptime", "group", "health",
            "degraded", "last_exit", "error", "last_error", "last_error_at", "retry_at", "held", "waiting_for",
            "log", "version", "installed"]
    assert list(UNIT.as_json()) == core
    assert list(line["units"][0]) == [*core, "python", "config_files", "rss_bytes", "cpu_percent"]
    assert list(PROXIED.as_json()["units"][0]) == [*core, "python", "config_files", "rss_bytes", "cpu_percent",
                                                   "proxy"]  # a unit's proxy state only with --proxy


def test_each_upgrade_result_carries_its_fields_in_the_order_it_always_had() -> None:
    head = ["ok", "at", "result", "code_name", "from_version", "to_version", "summary"]
    keys = {r.result: list(r.as_json()) for _, r in REPLIES if isinstance(r, UpgradeResult)}
    assert keys == {"upgraded": [*head, "actions", "python"], "rejected": [*head, "error", "errors"],
                    "failed": [*head, "error"], "partial": [*head, "unit", "error", "actions", "note"]}


def test_the_cli_reads_replies_by_attribute_not_by_key() -> None:
    """No `reply[...]`/`reply.get(...)` in supervisor/cli: a reply is read once, by read_reply."""
    cli = pathlib.Path(__file__).resolve().parent.parent / "supervisor" / "cli"
    by_key = re.compile(r"""\b(reply|first|before|after)(\[["']|\.get\()""")
    found = [f"{p.name}:{n}" for p in sorted(cli.glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if by_key.search(line)]
    assert found == []
