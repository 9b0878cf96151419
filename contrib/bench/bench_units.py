"""The benchmark units (the C fake unit, or the Python one) as unit specs. Apart from bench.py:
the benchmark daemon (daemon.py) imports this, and its RSS is measured, without the harness
(asyncio before synsup, statistics, tempfile, psutil's process walks) in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from synsup.supervisor.spec import HttpProbe, UnitSpec

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT_PY = os.path.join(HERE, "unit.py")


def unit_argv(python_units: bool = False) -> tuple[str, ...]:
    """The C unit (built here with cc) unless asked for the Python one or there is no compiler."""
    binary = os.path.join(HERE, ".build", "unit")
    if not python_units and (os.path.exists(binary) or shutil.which("cc")):
        if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(os.path.join(HERE, "unit.c")):
            os.makedirs(os.path.dirname(binary), exist_ok=True)
            subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "unit.c")], check=True)
        return (binary,)
    return (sys.executable, "-S", UNIT_PY)


UNIT = unit_argv(os.environ.get("BENCH_PYTHON_UNITS") == "1")


def unit_spec(name: str, step: int = 0, deps: tuple = (), delay: float = 0.0, port: int = 0) -> UnitSpec:
    env = (("UNIT_READY_DELAY", str(delay)), ("UNIT_PORT", str(port)))
    probes = (HttpProbe(host="127.0.0.1", port=port),) if port else ()
    return UnitSpec(name=name, argv=UNIT, env=env, dependencies=deps, step=step,
                    probes=probes, stop_timeout=5)
