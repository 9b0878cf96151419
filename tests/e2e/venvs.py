"""Virtualenvs with one released Synapse each, cached under /tmp keyed by version, for the
upgrade test and benchmark. `python tests/e2e/venvs.py` builds them ahead."""

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
    """(the newest release minus one, the newest release); SYNSUP_UPGRADE_FROM picks another
    older one. Each venv gets today's dependencies: an old release may not run on them (1.162.0
    fails on Twisted 26.10), which is why the default is the release just before the newest."""
    versions = released_versions()
    return os.environ.get("SYNSUP_UPGRADE_FROM") or versions[1], versions[0]


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
