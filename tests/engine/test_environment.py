"""environment: a unit whose arguments and environment the kernel would refuse (E2BIG) is
refused before its spawn, in one line naming the unit and the variables to shrink."""

from __future__ import annotations

import os
import subprocess
import sys

from fakes import run_supervisor, until

from synsup.supervisor.engine import environment
from synsup.supervisor.engine.environment import exec_refusal
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

ARGV = (sys.executable, "-c", "pass")


def _over_the_real_limit() -> dict[str, str]:
    """Variables of 100 kB (each under the per-variable limit) that together pass ARG_MAX."""
    count = os.sysconf("SC_ARG_MAX") // 100_000 + 2
    return {"PATH": "/usr/bin", **{f"SYNAPSE_BLOB_{i:02d}": "x" * (99_000 + i) for i in range(count)}}


def test_the_kernel_refuses_what_exec_refusal_refuses_and_runs_what_it_lets_pass():
    big = _over_the_real_limit()
    why = exec_refusal("main", ARGV, big)
    assert why is not None
    try:
        subprocess.run(ARGV, env=big, check=True)
        raise AssertionError("the kernel ran it")
    except OSError as e:
        assert e.errno == 7  # E2BIG: what the unit failed with before
    fits = dict(list(big.items())[: len(big) // 2])
    assert exec_refusal("main", ARGV, fits) is None
    subprocess.run(ARGV, env=fits, check=True)


def test_the_refusal_names_the_unit_the_limit_and_the_largest_variables():
    big = _over_the_real_limit()
    why = exec_refusal("generic1", ARGV, big)
    assert why is not None and "\n" not in why
    assert why.startswith("generic1: its arguments and environment take ")
    assert f"over the kernel's limit of {os.sysconf('SC_ARG_MAX')} bytes for one exec (ARG_MAX" in why
    largest = sorted(big, key=lambda k: len(big[k]), reverse=True)
    assert f"shrink or remove {largest[0]} (" in why and f"{largest[1]} (" not in why and "PATH (" not in why
    assert "--env-file" in why


def test_one_variable_over_the_per_variable_limit_is_named():
    why = exec_refusal("main", ARGV, {"SYNAPSE_HUGE": "x" * 140_000})
    assert why is not None and why.startswith("main: SYNAPSE_HUGE is 140013 bytes as KEY=VALUE")
    assert "131072" in why


def test_a_unit_the_kernel_would_refuse_fails_at_once_naming_the_variable_and_is_not_spawned(tmp_path, monkeypatch):
    """Before: spawned, "cannot start ...: Argument list too long", five backoffs, then failed."""
    monkeypatch.setattr(environment, "arg_max", lambda: 200_000)
    spec = UnitSpec(name="a", argv=ARGV, notify=False,
                    env=(("SYNAPSE_SMALL", "1"), ("SYNAPSE_BLOB", "x" * 120_000), ("SYNAPSE_OTHER", "y" * 90_000)))

    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        await until(lambda: unit.state is UnitState.FAILED)
        assert spawner.children == []
        assert unit.error.startswith("a: its arguments and environment take ")
        assert "shrink or remove SYNAPSE_BLOB (120013 bytes)" in unit.error and "SYNAPSE_SMALL" not in unit.error
        await sup.stop_all()
    run_supervisor(scenario, [spec], tmp_path, Timing(liveness_interval=None, notify_grace=0.0))


def test_the_prefixes_a_unit_keeps_are_its_specs_and_the_engine_keeps_no_applications():
    """Issue 17: the engine hard-codes no SYNAPSE_ prefix (the Synapse source's specs ask for it)."""
    base = {"PATH": "/bin", "SYNAPSE_CACHE_FACTOR": "2", "BENCH_X": "1"}
    assert environment.unit_environment((), None, base) == {"PATH": "/bin"}
    assert environment.unit_environment((), None, base, keep=("SYNAPSE_",)) == {"PATH": "/bin",
                                                                                "SYNAPSE_CACHE_FACTOR": "2"}


def test_a_change_of_synsups_own_environment_reaches_the_next_spawn(monkeypatch):
    """What a unit keeps of synsup's environment is made once and kept while that is unchanged:
    a variable set, changed or removed since is seen at the next spawn."""
    from synsup.supervisor.engine.environment import unit_environment
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_TIME", raising=False)
    assert unit_environment((), None)["LANG"] == "C.UTF-8"
    assert unit_environment((), None) is not unit_environment((), None)  # each spawn its own dict
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert unit_environment((), None)["LANG"] == "de_DE.UTF-8"
    monkeypatch.setenv("LC_TIME", "en_GB.UTF-8")
    monkeypatch.setenv("SYNAPSE_CACHE_FACTOR", "2")
    assert unit_environment((), None)["LC_TIME"] == "en_GB.UTF-8"
    assert "SYNAPSE_CACHE_FACTOR" not in unit_environment((), None)
    assert unit_environment((), None, keep=("SYNAPSE_",))["SYNAPSE_CACHE_FACTOR"] == "2"
    monkeypatch.delenv("LC_TIME")
    assert "LC_TIME" not in unit_environment((), None)
