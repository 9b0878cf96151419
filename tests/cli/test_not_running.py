"""One error type (issue 17): every command that needs the daemon says the same one line and
exits 3 when none runs (errors.NotRunning, printed once by cli/main.py); `status` lists what a
dead daemon left instead, `stop` has nothing to do (exit 0), `units` (for completion) is silent."""

from __future__ import annotations

import pytest

from synsup.supervisor.cli.main import main
from synsup.units.synapse_source import SynapseSource

NEED_THE_DAEMON = [["restart"], ["restart", "main"], ["reload"], ["reopen-logs"], ["pause"], ["resume"],
                   ["reexec"], ["top"], ["upgrade"], ["stop", "main"]]


@pytest.mark.parametrize("command", NEED_THE_DAEMON, ids=" ".join)
def test_a_command_without_a_daemon_says_one_line_and_exits_3(command, short_dir, capsys):
    assert main(SynapseSource(), [*command, "--state-dir", short_dir]) == 3
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"synsup is not running (state dir {short_dir}); use `synsup start`\n")


def test_status_exits_3_stop_0_and_units_is_silent(short_dir, capsys):
    assert main(SynapseSource(), ["status", "--state-dir", short_dir]) == 3
    assert capsys.readouterr().err == f"synsup is not running (state dir {short_dir})\n"
    assert main(SynapseSource(), ["stop", "--state-dir", short_dir]) == 0
    assert capsys.readouterr().out == f"synsup is not running (state dir {short_dir}); nothing to stop\n"
    assert main(SynapseSource(), ["units", "--state-dir", short_dir]) == 0
    assert capsys.readouterr() == ("", "")
