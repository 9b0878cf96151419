"""The command line's dispatch."""

from __future__ import annotations


def test_every_command_has_a_handler_and_every_handler_a_command():
    """Dispatch is one table (cli/main.py HANDLERS): a command without a route fails here, not at run time."""
    from synsup.supervisor.cli.main import COMMANDS, HANDLERS
    assert set(HANDLERS) == set(COMMANDS)
