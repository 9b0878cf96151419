"""`synsup start` after an upgrade: the units run the code the last upgrade installed (the state
dir remembers it), unless the admin starts other code knowingly (--force-python)."""

from __future__ import annotations

import argparse

from ..daemon.unit_code import CodeRecord, main_code
from ..source import Loaded, Source
from ..statedir import StateDir


def code_refusal(state: StateDir, source: Source, args: argparse.Namespace, loaded: Loaded) -> str:
    """One line when `--python` runs older code than the last upgrade installed ("" to go on).
    With --force-python the start goes on, and its code is what the next start compares with."""
    record = CodeRecord.read(state)
    installed, current = record.installed, main_code(loaded.specs)
    if installed is None or not current.python or current.python == installed.python:
        return ""
    if getattr(args, "force_python", False):
        record.upgraded(current)
        record.write(state)
        return ""
    why = source.code_refusal(args, loaded, installed.version)
    if not why:
        return ""
    name = next((s.code_name for s in loaded.specs if s.code_name), "the code")
    return (f"the last upgrade installed {name} {installed.version} ({installed.python}), but "
            f"--python {current.python} runs {current.version or '?'}: {why}; start with --python "
            f"{installed.python} (update it in the unit file), or add --force-python to start on "
            f"{current.python} knowingly")
