"""The `synsup` command (and `python -m synsup`): the generic CLI with Synapse as its source."""

from __future__ import annotations

import sys

from synsup.supervisor.cli.main import main as run_cli
from synsup.units.synapse_source import SynapseSource


def main(argv: list[str] | None = None) -> int:
    return run_cli(SynapseSource(), argv)


if __name__ == "__main__":
    sys.exit(main())
