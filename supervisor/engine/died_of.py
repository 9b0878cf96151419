"""The error an admin needs from a unit's last output lines: the exception it died of."""

from __future__ import annotations

import re

# `SomeError: message`, `pkg.mod.SomethingException: ...`, or a bare `AssertionError`, as Python
# prints the last line of a traceback (after any `During handling ...` chain).
EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Failure|Exit|Interrupt|Fault)(?::\s.*|:)?$"
)


def exception_line(lines: list[str]) -> str | None:
    """The last line of the form `SomeError: message`, stripped; None when there is none."""
    for line in reversed(lines):
        text = line.strip()
        if EXCEPTION_LINE.match(text):
            return text
    return None
