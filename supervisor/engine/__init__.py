"""Generic process supervision: units, their processes, probes, restarts. Knows nothing of Synapse,
of the control socket or of the command line."""
