"""One error type for what the command line reports: a message and an exit code, raised where
the problem is found and turned into one line on stderr and the exit status once, at the CLI's
edge (`cli/main.py`). A traceback reaching a user is a bug."""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3


class SynsupError(Exception):
    """Printed as `synsup: error: MESSAGE`, exit 1 unless the error says otherwise."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def line(self) -> str:
        return f"synsup: error: {self}"


class NotRunning(SynsupError):
    """No daemon answers for the state dir: exit 3, as systemd's `status` says "not running"."""

    exit_code = EXIT_NOT_RUNNING

    def __init__(self, state_dir: str) -> None:
        super().__init__(f"synsup is not running (state dir {state_dir}); use `synsup start`")
        self.state_dir = state_dir

    def line(self) -> str:
        return str(self)
