"""A unit's captured stdout and stderr: a size-rotated log file and the last lines in memory."""

from __future__ import annotations

import asyncio
import collections
import os

MAX_BYTES = 10 * 1024 * 1024
KEEP_FILES = 3
TAIL_LINES = 50


class UnitOutput:
    def __init__(self, path: str, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._file = None
        self._partial = ""

    def _open(self):
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)
        return self._file

    def write(self, data: bytes) -> None:
        self._append(data)
        lines = (self._partial + data.decode(errors="replace")).split("\n")
        self._partial = lines.pop()[-4096:]
        self.tail.extend(line.rstrip("\r") for line in lines)

    def _append(self, data: bytes) -> None:
        f = self._open()
        f.write(data)
        if f.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self.close()
        for index in range(KEEP_FILES - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")

    def note(self, text: str) -> None:
        """A line of synsup's own in the unit's log (spawns and exits)."""
        self._append(f"[synsup] {text}\n".encode())

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            data = await stream.read(65536)
            if not data:
                return
            self.write(data)

    def last(self, n: int = 10) -> list[str]:
        lines = list(self.tail) + ([self._partial] if self._partial else [])
        return lines[-n:]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
