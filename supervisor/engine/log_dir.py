"""The unit log dir, made (0750) and checked once before anything starts."""

from __future__ import annotations

import os

from ..errors import SynsupError
from ..path_trust import UntrustedPath, check_symlinks, open_dir_nofollow


class LogDirError(SynsupError):
    pass


def prepare_log_dir(log_dir: str) -> str:
    """Create the log dir (0750) before anything starts; the resolved path the units' logs go
    to. A symlink on the way that another user owns is refused: it could point anywhere."""
    fix = "pass --log-dir DIR (a directory synsup may write)"
    try:
        check_symlinks(log_dir)
    except UntrustedPath as e:
        raise LogDirError(f"log dir {log_dir} is not safe: {e}; remove it, or {fix}") from None
    try:
        os.makedirs(log_dir, mode=0o750, exist_ok=True)
        real = os.path.realpath(log_dir)
        os.close(open_dir_nofollow(real))
    except OSError as e:
        raise LogDirError(f"cannot create log dir {log_dir}: {e.strerror}; {fix}") from None
    try:
        _try_writing(real)
    except OSError as e:
        raise LogDirError(f"cannot write to log dir {log_dir}: {e.strerror}; {fix}") from None
    return real


def _try_writing(real: str) -> None:
    """A dir that exists but takes no file (read-only mount, mode, full disk) drops every
    line of every unit: found here, before anything starts."""
    path = os.path.join(real, f".synsup-write-test-{os.urandom(8).hex()}")  # not tempfile (random: 0.5 MB of RSS)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
        os.unlink(path)
