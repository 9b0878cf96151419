"""Generic supervision of unit specs, in three layers: `engine` (units, processes, probes,
restarts), `daemon` (the long-running daemon around an engine) and `cli` (the `synsup`
command); imports go cli -> daemon -> engine, never back. `cluster` (multi-host: the store
client) is used by daemon and cli, only with --cluster. The modules at this level are shared
by all of them: the unit spec, the `Source` protocol an application implements, the plans a
source returns, the control protocol, the state dir and the process records in it. Nothing
here knows Synapse: that is `synsup.units`, plugged in as a `Source` by synsup/__main__.py."""

import sys

# structlog imports its Twisted support whenever Twisted is importable, as it is in Synapse's
# virtualenv: 6 MB of the daemon's RSS and 40 ms of every command, for nothing synsup uses.
sys.modules.setdefault("structlog.twisted", None)  # type: ignore[arg-type]

from .tls import asyncio_without_ssl  # noqa: E402

asyncio_without_ssl()  # OpenSSL loaded only for TLS: 4.5 MB of the daemon's RSS otherwise

