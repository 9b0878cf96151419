"""structlog set-up: readable on a TTY, JSON lines otherwise, syslog priorities under journald.

Logging never fails the daemon: a log stream that cannot be written (a full disk under
daemon.log) drops the line. Repeated identical events are rate-limited."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO, cast

import structlog

from ..engine.unit_output import LOG_FLAGS, rotate_files

PRIORITIES = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
BURST = 10  # identical events (same event, unit, error) let through per window
WINDOW = 10.0


class DaemonLog:
    """daemon.log, when it is this daemon's stderr (a background start): rotated by size
    like the unit logs, and reopened on SIGUSR1 after a rename-style logrotate."""

    CHECK_EVERY = 64  # writes between size checks

    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._writes = 0

    @classmethod
    def of_stderr(cls, path: str, max_bytes: int, keep: int) -> DaemonLog | None:
        try:
            ours = os.fstat(2)
            there = os.stat(path)
        except OSError:
            return None
        same = (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino)
        return cls(path, max_bytes, keep) if same else None

    def reopen(self) -> None:
        sys.stderr.flush()
        fd = os.open(self.path, LOG_FLAGS & ~os.O_NONBLOCK, 0o640)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def written(self) -> None:
        self._writes += 1
        if self._writes % self.CHECK_EVERY or not self.max_bytes:
            return
        try:
            if os.fstat(2).st_size >= self.max_bytes:
                rotate_files(self.path, self.keep)
                self.reopen()
        except OSError:
            pass


class SafeStream:
    """A text stream whose write never raises: what cannot be written is dropped."""

    def __init__(self, stream: TextIO, daemon_log: DaemonLog | None = None) -> None:
        self.stream = stream
        self.daemon_log = daemon_log
        self.dropped = 0

    def write(self, text: str) -> int:
        try:
            written = self.stream.write(text)
        except (OSError, ValueError):
            self.dropped += 1
            return 0
        if self.daemon_log is not None:
            self.flush()
            self.daemon_log.written()
        return written

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return self.stream.isatty()


class RateLimiter:
    """A structlog processor: at most BURST identical events per WINDOW seconds; the next one
    let through says how many were suppressed."""

    def __init__(self, burst: int = BURST, window: float = WINDOW) -> None:
        self.burst, self.window = burst, window
        self._seen: dict[tuple[Any, ...], list[float]] = {}  # key -> [window start, count, suppressed]

    def __call__(self, _logger: object, _method: str, event_dict: dict) -> dict:
        key = (event_dict.get("event"), event_dict.get("unit"), event_dict.get("error"))
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            suppressed = int(seen[2]) if seen else 0
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > 10_000:
                self._seen = {key: self._seen[key]}
            if suppressed:
                event_dict["suppressed"] = suppressed
            return event_dict
        seen[1] += 1
        if seen[1] > self.burst:
            seen[2] += 1
            raise structlog.DropEvent
        return event_dict


def _journal_prefix(_logger: object, method: str, event_dict: dict) -> dict:
    event_dict["_priority"] = PRIORITIES.get(method, 6)
    return event_dict


def _journal_render(_logger: object, _method: str, event_dict: dict) -> str:
    priority = event_dict.pop("_priority", 6)
    event = event_dict.pop("event", "")
    fields = " ".join(f"{k}={v}" for k, v in event_dict.items() if k != "timestamp")
    return f"<{priority}>{event} {fields}".rstrip()


def choose_format(requested: str | None, stream: Any = sys.stderr) -> str:
    if requested:
        return requested
    if os.environ.get("JOURNAL_STREAM"):
        return "journal"
    return "console" if stream.isatty() else "json"


def configure(fmt: str | None = None, stream: Any = sys.stderr, level: int = logging.INFO,
              daemon_log: DaemonLog | None = None) -> None:
    fmt = choose_format(fmt, stream)
    processors: list = [RateLimiter(), structlog.processors.add_log_level]
    if fmt == "journal":
        processors += [_journal_prefix, _journal_render]
    else:
        processors.append(structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S"))
        if fmt == "json":
            processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        else:
            processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, SafeStream(stream, daemon_log))),  # one write a line
        cache_logger_on_first_use=False,
    )
