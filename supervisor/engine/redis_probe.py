"""The Redis probe: AUTH and PING over RESP, and with the unit's pid, `INFO server`'s process_id,
so that the Redis answering is the unit's own. RESP read by hand, a few lines: no client library."""

from __future__ import annotations

from ..spec import RedisProbe
from .probe_connection import ProbeConnection, ProbeFailed, reply_text


def _command(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n"]
    for word in words:
        out.append(f"${len(word.encode())}\r\n{word}\r\n")
    return "".join(out).encode()


def _resp(data: bytes, count: int) -> list[bytes] | None:
    """The first `count` RESP replies in `data` (a line, or a bulk string's content); None
    while incomplete."""
    replies: list[bytes] = []
    pos = 0
    while len(replies) < count:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        line, pos = data[pos:end], end + 2
        if line[:1] == b"$" and line[1:].isdigit():
            size = int(line[1:])
            if len(data) < pos + size + 2:
                return None
            line, pos = data[pos:pos + size], pos + size + 2
        replies.append(line)
    return replies


async def _replies(probe: RedisProbe, commands: list[bytes]) -> list[bytes]:
    conn = await ProbeConnection.open(probe)
    try:
        await conn.send(b"".join(commands))
        data = b""
        while (replies := _resp(data, len(commands))) is None:
            chunk = await conn.recv()
            if not chunk:
                replies = _resp(data + b"\r\n" * len(commands), len(commands))
                if replies is None:
                    raise ProbeFailed(f"{probe.describe()} closed the connection mid-reply")
                break
            data += chunk
    finally:
        conn.close()
    return replies


def _redis_pid(probe: RedisProbe, info: bytes) -> int:
    for line in info.splitlines():
        if line.startswith(b"process_id:") and line[11:].strip().isdigit():
            return int(line[11:])
    raise ProbeFailed(f"{probe.describe()} did not say its process_id (INFO server: {reply_text(info[:80])!r})")


async def redis_ping(probe: RedisProbe, owner_pid: int | None = None) -> None:
    """PING (after AUTH); with `owner_pid`, also that `INFO server` names that process: the
    Redis answering is ours, not another one on the same port."""
    commands = ([_command("AUTH", probe.password)] if probe.password else []) + [_command("PING")]
    if owner_pid is not None:
        commands.append(_command("INFO", "server"))
    replies = await _replies(probe, commands)
    if probe.password and not replies[0].startswith(b"+OK"):
        raise ProbeFailed(f"{probe.describe()} refused AUTH: {reply_text(replies[0])}")
    pong = replies[1 if probe.password else 0]
    if not pong.startswith(b"+PONG"):
        raise ProbeFailed(f"{probe.describe()} answered PING with {reply_text(pong)!r}")
    if owner_pid is not None and (pid := _redis_pid(probe, replies[-1])) != owner_pid:
        raise ProbeFailed(f"{probe.describe()} is answered by another Redis (pid {pid}), not ours (pid {owner_pid})")
