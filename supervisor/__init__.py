"""The engine: runs generic unit specs in dependency order and keeps them alive."""

import sys

# structlog imports its Twisted support whenever Twisted is importable, as it is in Synapse's
# virtualenv: 6 MB of the daemon's RSS and 40 ms of every command, for nothing synsup uses.
sys.modules.setdefault("structlog.twisted", None)  # type: ignore[arg-type]
