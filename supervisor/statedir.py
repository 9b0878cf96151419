"""The state dir: where it is, that it is ours, and the paths of what synsup keeps in it."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Any

from .errors import SynsupError
from .path_trust import UntrustedPath, check_ancestors, who

FIX = "pass --state-dir DIR (a directory of your own, mode 0700) or set SYNSUP_STATE_DIR"
SUN_PATH_MAX = 107  # bytes of a UNIX socket path (sun_path is 108, with its NUL)
LONGEST_SOCKET = os.path.join("notify", "notify.sock")  # the longest socket path below the state dir


class StateDirError(SynsupError):
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
    def code_file(self) -> str:
        """Which code the units run: what the last upgrade installed, a partial upgrade (daemon.unit_code)."""
        return os.path.join(self.path, "code.json")

    @property
    def daemon_log(self) -> str:
        return os.path.join(self.path, "daemon.log")

    def create(self) -> None:
        """Make the dir (never through a symlink), or take an existing one only if it is ours."""
        self._check_length()
        try:
            self._check_above()
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            self._check_above()
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                pass
            self._check_own()
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
            os.makedirs(self.notify_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StateDirError(f"cannot create state dir {self.path}: {e.strerror}; {FIX}") from None

    def verify(self) -> None:
        """What a client checks before it trusts anything in the dir (its socket, its records):
        nothing there is fine (nothing runs); a dir that is not ours is an error."""
        try:
            os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise StateDirError(f"cannot check state dir {self.path}: {e.strerror}; run as its owner, or {FIX}") from None
        try:
            self._check_above()
            self._check_own()
        except OSError as e:
            raise StateDirError(f"cannot check state dir {self.path}: {e.strerror}; {FIX}") from None

    def _check_length(self) -> None:
        """Every socket synsup makes in the dir must fit a UNIX socket address."""
        longest = len(os.fsencode(os.path.join(self.path, LONGEST_SOCKET)))
        if longest > SUN_PATH_MAX:
            room = SUN_PATH_MAX - len(LONGEST_SOCKET) - 1
            raise StateDirError(f"state dir {self.path} is too long ({len(os.fsencode(self.path))} bytes): the "
                                f"UNIX sockets in it need a path of at most {room} bytes; {FIX}")

    def _check_above(self) -> None:
        try:
            check_ancestors(self.path)
        except UntrustedPath as e:
            raise StateDirError(f"state dir {self.path} is not safe: {e}, so another user could replace it; "
                                f"{FIX}") from None

    def _check_own(self) -> None:
        st = os.lstat(self.path)
        if stat.S_ISLNK(st.st_mode):
            raise StateDirError(f"state dir {self.path} is a symlink (to {os.readlink(self.path)}); synsup never "
                                f"uses a state dir through a symlink: remove it, or {FIX}")
        if not stat.S_ISDIR(st.st_mode):
            raise StateDirError(f"state dir {self.path} is not a directory; remove it, or {FIX}")
        if st.st_uid != os.getuid():
            raise StateDirError(f"state dir {self.path} is owned by {who(st.st_uid)}, not by {who(os.getuid())}: "
                                f"not ours: run synsup as its owner, remove it if you did not make it, or {FIX}")
        if st.st_mode & 0o022:
            raise StateDirError(f"state dir {self.path} is writable by other users "
                                f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 700 {self.path}, or {FIX}")

    def write_json(self, path: str, data: Any) -> None:
        self.write_text(path, json.dumps(data))

    def write_text(self, path: str, text: str) -> None:
        """Replace the file at `path` with `text` at once (readers never see half of it)."""
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
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
