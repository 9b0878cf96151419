"""Virtualenvs with one released Synapse each, cached under /tmp keyed by version, for the
upgrade test and benchmark: `python -m synsup.tests...` is not needed, run this file to
build them ahead (`python tests/e2e/venvs.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.environ.get("SYNSUP_VENV_CACHE", "/tmp/synsup-synapse-venvs")


def released_versions(pip: str = sys.executable) -> list[str]:
    """matrix-synapse's releases, newest first (pip index versions)."""
    done = subprocess.run([pip, "-m", "pip", "index", "versions", "matrix-synapse"], capture_output=True,
                          text=True, timeout=120)
    for line in done.stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",")]
    raise RuntimeError(f"pip index versions matrix-synapse gave no versions: {done.stderr.strip()[-200:]}")


def upgrade_pair() -> tuple[str, str]:
    """(the newest release of the previous minor series, the newest release)."""
    versions = released_versions()
    newest = versions[0]
    minor = newest.rsplit(".", 1)[0]
    older = next(v for v in versions if v.rsplit(".", 1)[0] != minor)
    return older, newest


def synapse_venv(version: str) -> str:
    """The python of a venv with matrix-synapse==version (postgres, redis), built once."""
    path = os.path.join(ROOT, version)
    python = os.path.join(path, "bin", "python")
    marker = os.path.join(path, "synsup-ready.json")
    if os.path.exists(marker):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", path], check=True, timeout=120)
    subprocess.run([python, "-m", "pip", "install", "-q", f"matrix-synapse[postgres,redis]=={version}"],
                   check=True, timeout=900)
    with open(marker, "w") as f:
        json.dump({"version": version}, f)
    return python


if __name__ == "__main__":
    pair = upgrade_pair()
    for v in pair:
        print(v, synapse_venv(v))
