"""Whether a path can be trusted: reached through no symlink another user could have planted,
in directories only root or we may change (a sticky one such as /tmp is fine), and opened
again later without following any symlink planted since."""

from __future__ import annotations

import os
import pwd
import stat


class UntrustedPath(Exception):
    """Why a path cannot be trusted, as the middle of a one-line error."""


def who(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def trusted_owner(uid: int) -> bool:
    return uid in (0, os.getuid())


def _prefixes(path: str) -> list[str]:
    """/a/b/c -> ["/a", "/a/b", "/a/b/c"]"""
    parts = os.path.abspath(path).strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0]]


def check_symlinks(path: str) -> None:
    """Every symlink on the way to `path` (the last component included) is root's or ours."""
    for prefix in _prefixes(path):
        try:
            st = os.lstat(prefix)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) and not trusted_owner(st.st_uid):
            raise UntrustedPath(f"{prefix} is a symlink owned by {who(st.st_uid)}")


def check_ancestors(path: str) -> None:
    """The directories above `path` (symlinks resolved) are root's or ours, and one that other
    users may write is sticky (as /tmp is), so nobody else can rename what we put there."""
    check_symlinks(os.path.dirname(os.path.abspath(path)))
    real = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for directory in ["/", *_prefixes(real)]:
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            return
        if not trusted_owner(st.st_uid):
            raise UntrustedPath(f"{directory} is owned by {who(st.st_uid)}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UntrustedPath(f"{directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})")


def open_dir_nofollow(path: str) -> int:
    """A directory's fd, opened one component at a time without following any symlink (ELOOP
    or ENOTDIR if one was planted anywhere on the way). `path` is a resolved path."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags)
    try:
        for part in os.path.abspath(path).strip("/").split("/"):
            if part:
                parent, fd = fd, -1
                try:
                    fd = os.open(part, flags, dir_fd=parent)
                finally:
                    os.close(parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd
