"""structlog set-up: readable on a TTY, JSON lines otherwise, syslog priorities under journald."""

from __future__ import annotations

import logging
import os
import sys

import structlog

PRIORITIES = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


def _journal_prefix(_logger: object, method: str, event_dict: dict) -> dict:
    event_dict["_priority"] = PRIORITIES.get(method, 6)
    return event_dict


def _journal_render(_logger: object, _method: str, event_dict: dict) -> str:
    priority = event_dict.pop("_priority", 6)
    event = event_dict.pop("event", "")
    fields = " ".join(f"{k}={v}" for k, v in event_dict.items() if k != "timestamp")
    return f"<{priority}>{event} {fields}".rstrip()


def choose_format(requested: str | None, stream=sys.stderr) -> str:
    if requested:
        return requested
    if os.environ.get("JOURNAL_STREAM"):
        return "journal"
    return "console" if stream.isatty() else "json"


def configure(fmt: str | None = None, stream=sys.stderr, level: int = logging.INFO) -> None:
    fmt = choose_format(fmt, stream)
    processors: list = [structlog.processors.add_log_level]
    if fmt == "journal":
        processors += [_journal_prefix, _journal_render]
    else:
        processors.append(structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S"))
        processors.append(structlog.processors.JSONRenderer() if fmt == "json"
                          else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
