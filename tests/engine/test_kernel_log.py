"""kernel_log: the kernel's OOM kill records, from lines recorded on real kernels."""

from __future__ import annotations

import pytest

from synsup.supervisor.engine.kernel_log import KernelLog, oom_record

# /dev/kmsg records as kernels wrote them (PRIO,SEQ,USEC,FLAGS;MESSAGE)
SAMPLES = [
    ("6.x global", "3,4711,90871234,-;Out of memory: Killed process 4242 (python3) total-vm:2097152kB, "
     "anon-rss:1834320kB, file-rss:0kB, shmem-rss:0kB, UID:108 pgtables:3800kB oom_score_adj:0",
     4711, 4242, "Out of memory: Killed process 4242 (python3) total-vm:2097152kB"),
    ("cgroup limit", "3,812,5512000111,-;Memory cgroup out of memory: Killed process 1777 (python) "
     "total-vm:812000kB, anon-rss:500000kB, file-rss:1200kB, shmem-rss:0kB, UID:0 pgtables:1400kB oom_score_adj:0",
     812, 1777, "Memory cgroup out of memory: Killed process 1777 (python) total-vm:812000kB"),
    ("summary line", "6,4710,90871200,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
     "mems_allowed=0,oom_memcg=/system.slice/synsup.service,task_memcg=/system.slice/synsup.service,"
     "task=python3,pid=4242,uid=108", 4710, 4242, "oom-kill:constraint=CONSTRAINT_MEMCG"),
    ("before 4.19", "3,90,1000,-;Killed process 3131 (redis-server) total-vm:500kB, anon-rss:400kB, file-rss:0kB",
     90, 3131, "Killed process 3131 (redis-server) total-vm:500kB"),
]
NOT_OOM = [
    "6,4709,90871100,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "4,100,2000,-;Out of memory and no killable processes...",
    "6,101,2001,-;oom_reaper: reaped process 4242 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    " SUBSYSTEM=cpu",
    "Out of memory: Killed process 4242 (python3) total-vm:1kB",  # not a kmsg record
]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_an_oom_kill_record_names_the_process(sample):
    _, line, seq, pid, text = sample
    record = oom_record(line)
    assert record is not None and (record.seq, record.pid, record.text) == (seq, pid, text)


@pytest.mark.parametrize("line", NOT_OOM)
def test_other_records_are_no_oom_kill(line):
    assert oom_record(line) is None


def test_only_records_logged_after_the_reader_opened_and_after_the_given_one_count(tmp_path):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text(SAMPLES[0][1] + "\n")  # logged before synsup started: never ours
    log = KernelLog(str(kmsg))
    assert log.readable
    at_spawn = log.drain()
    with open(kmsg, "a") as f:
        f.write("6,4800,99000000,-;eth0: link up\n" + SAMPLES[1][1].replace("812,", "4801,", 1) + "\n")
    assert log.killed(4242, at_spawn) is None
    assert log.killed(1777, at_spawn) == log.killed(1777, -1)
    assert log.killed(1777, at_spawn).seq == 4801 and log.killed(1777, 4801) is None
    log.close()


def test_an_unreadable_log_is_not_readable(tmp_path):
    log = KernelLog(str(tmp_path / "missing"))
    assert not log.readable and log.drain() == -1 and log.killed(1, -1) is None
