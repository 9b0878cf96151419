"""synsup's modules as an installed synsup has them: byte-compiled (contrib/bytecode.sh). An
editable install is never compiled, and with PYTHONDONTWRITEBYTECODE set every synsup command
measured would compile its modules again first (about 0.2 s of CPU), which no installed
synsup does."""

from __future__ import annotations

import os
import subprocess
import sys

BYTECODE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bytecode.sh")


def as_installed() -> None:
    subprocess.run(["bash", BYTECODE, sys.executable], check=True)
