"""Generic supervision of unit specs, in three layers: `engine` (units, processes, probes,
restarts), `daemon` (the long-running daemon around an engine) and `cli` (the `synsup`
command); imports go cli -> daemon -> engine, never back. The modules at this level are shared
by all three: the unit spec, the `Source` protocol an application implements, the plans a
source returns, the control protocol, the state dir and the process records in it. Nothing
here knows Synapse: that is `synsup.units`, plugged in as a `Source` by synsup/__main__.py."""
