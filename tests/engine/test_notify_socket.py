"""One notify socket for every unit (notify_socket.py): the kernel names each message's sender
(SO_PASSCRED), and a message counts only for the unit whose process, or an ancestor of it, sent it."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys

from synsup.supervisor.engine.notify_socket import NotifySocket, parent_of

SEND = ("import os, socket; "
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1\\nSTATUS=up', os.environ['NOTIFY_SOCKET'])")


def run_senders(short_dir, senders: dict[str, list[str]], listened: set[str],
                expect: set[str]) -> dict[str, list[dict[str, str]]]:
    """Start each sender with NOTIFY_SOCKET; those in `listened` are heard as units of their own
    name; returns once those in `expect` were heard."""
    short_dir = pathlib.Path(short_dir)
    heard: dict[str, list[dict[str, str]]] = {name: [] for name in senders}

    async def main():
        (short_dir / "3.sock").write_text("")  # left by an earlier synsup: one socket per unit
        hub = NotifySocket(str(short_dir / "notify.sock"))
        assert not (short_dir / "3.sock").exists()
        env = {**os.environ, "NOTIFY_SOCKET": hub.path}
        procs = {}
        try:
            for name, argv in senders.items():
                procs[name] = proc = subprocess.Popen(argv, env=env)
                if name in listened:
                    hub.listen(proc.pid, heard[name].append)
            for proc in procs.values():
                await asyncio.to_thread(proc.wait, 30)
            deadline = asyncio.get_running_loop().time() + 10
            while any(not heard[n] for n in expect) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # a message for no unit would have been read by now, too
        finally:
            hub.close()
        assert not (short_dir / "notify.sock").exists()
    asyncio.run(main())
    return heard


def test_a_message_counts_for_the_unit_whose_process_sent_it_and_no_other(short_dir):
    heard = run_senders(short_dir, {"a": [sys.executable, "-c", SEND], "b": [sys.executable, "-c", "pass"],
                                    "stranger": [sys.executable, "-c", SEND]}, listened={"a", "b"}, expect={"a"})
    assert heard["a"] == [{"READY": "1", "STATUS": "up"}]
    assert heard["b"] == []  # a's READY=1 is a's alone
    assert heard["stranger"] == []  # no unit's process: dropped


def test_a_wrapper_that_did_not_exec_speaks_for_its_unit(short_dir):
    wrapper = ["/bin/sh", "-c", f'"{sys.executable}" -c "{SEND}"; true']  # the sender is sh's child
    heard = run_senders(short_dir, {"wrapped": wrapper}, listened={"wrapped"}, expect={"wrapped"})
    assert heard["wrapped"] == [{"READY": "1", "STATUS": "up"}]


def test_parent_of_reads_a_name_with_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "a (b) c"
    odd.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(odd), "30"])
    try:
        assert parent_of(proc.pid) == os.getpid()
    finally:
        proc.kill()
        proc.wait()
    assert parent_of(proc.pid) is None
