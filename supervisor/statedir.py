"""The state dir: control socket, notify sockets, and the records that find processes again."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import psutil


class StateDirError(Exception):
    pass


def default_state_dir() -> str:
    if env := os.environ.get("SYNSUP_STATE_DIR"):
        return env
    if os.getuid() == 0:
        return "/run/synsup"
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(runtime, "synsup")
    return f"/tmp/synsup-{os.getuid()}"


@dataclass(frozen=True)
class StateDir:
    path: str

    @property
    def socket(self) -> str:
        return os.path.join(self.path, "synsup.sock")

    @property
    def notify_dir(self) -> str:
        return os.path.join(self.path, "notify")

    @property
    def daemon_file(self) -> str:
        return os.path.join(self.path, "daemon.json")

    @property
    def units_file(self) -> str:
        return os.path.join(self.path, "units.json")

    @property
    def log_dir_file(self) -> str:
        """Where the unit logs are: written at start, kept after the daemon stops."""
        return os.path.join(self.path, "log_dir.json")

    @property
    def config_dir(self) -> str:
        return os.path.join(self.path, "config")

    @property
    def daemon_log(self) -> str:
        return os.path.join(self.path, "daemon.log")

    def create(self) -> None:
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            os.chmod(self.path, 0o700)
            os.makedirs(self.notify_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StateDirError(f"cannot create state dir {self.path}: {e.strerror}; "
                                "pass --state-dir DIR or set SYNSUP_STATE_DIR") from None

    def write_json(self, path: str, data: Any) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def read_json(self, path: str) -> Any:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def remove(self, *paths: str) -> None:
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def process_record(pid: int) -> dict[str, Any] | None:
    """What identifies a live process beyond its pid (pids get reused)."""
    try:
        p = psutil.Process(pid)
        return {"pid": pid, "create_time": p.create_time(), "cmdline": p.cmdline()}
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def still_running(record: dict[str, Any]) -> bool:
    """Same pid, same start time, same command (a process may retitle itself, as redis-server
    does, so the program name is compared when the full command line differs)."""
    live = process_record(int(record.get("pid", 0) or 0)) if record.get("pid") else None
    if not live or live["create_time"] != record.get("create_time"):
        return False
    recorded, now = record.get("cmdline") or [], live["cmdline"] or []
    return recorded == now or bool(recorded and now and
                                   os.path.basename(recorded[0]) in os.path.basename(now[0]))


def running_daemon(state: StateDir) -> int | None:
    record = state.read_json(state.daemon_file)
    return record["pid"] if isinstance(record, dict) and still_running(record) else None
