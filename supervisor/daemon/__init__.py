"""The long-running daemon: control socket, one operation queue, reloads, upgrades, records,
systemd, metrics and failure hooks, around an engine Supervisor."""
