"""HAProxy's runtime API (the `stats socket ... level admin` of its config): one command a
connection, its answer read to the end. What the front door asks of it: which servers each
backend has (`show servers state`), the sessions a server holds (`show stat`), and the commands
that change a server (`set server`, `add server`, `del server`) and the route map (`show map`,
`add map`, `set map`, `del map`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .front_door import ProxyError

TIMEOUT = 2.0  # seconds for one command: HAProxy answers at once or not at all
ANSWER_LIMIT = 4 * 1024 * 1024


class RuntimeApiError(ProxyError):
    """The socket cannot be reached, is not HAProxy's, or refused a command: one line."""


@dataclass(frozen=True)
class Slot:
    """One server line of a backend: the unit `server` in `backend`, at `address`."""

    backend: str
    server: str
    address: str = ""
    admin: str = "ready"  # "ready", "drain" or "maint", as `set server ... state` sets it


def admin_state(bits: int) -> str:
    """`srv_admin_state` of `show servers state` (maintenance bits 0x01-0x04 and 0x20, drain 0x08 and 0x10)."""
    if bits & 0x27:
        return "maint"
    return "drain" if bits & 0x18 else "ready"


class HAProxyRuntime:
    def __init__(self, address: str, timeout: float = TIMEOUT) -> None:
        self.address, self.timeout = address, timeout

    def describe(self) -> str:
        return self.address

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if "/" in self.address:
            return await asyncio.open_unix_connection(self.address)
        host, _, port = self.address.rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port))

    async def command(self, line: str) -> str:
        """The answer to one command; RuntimeApiError when the socket does not answer."""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._open()
                try:
                    writer.write(line.encode() + b"\n")
                    await writer.drain()
                    answer = await _read_to_end(reader)
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError) as e:
            raise RuntimeApiError(f"cannot reach {self.address}: {e.strerror or e}"
                                  if isinstance(e, OSError) else f"{self.address} does not answer") from None
        return answer.decode(errors="replace")

    async def changed(self, line: str) -> None:
        """A command that changes something: anything but an empty answer is HAProxy refusing it."""
        answer = (await self.command(line)).strip()
        if answer and not answer.startswith("New server registered") and answer != "Server deleted.":
            raise RuntimeApiError(f"HAProxy at {self.address} refused `{line}`: {answer.splitlines()[0]}")

    async def identify(self) -> str:
        """Which HAProxy process answers (its pid and start time: another after a restart or a reload);
        RuntimeApiError unless HAProxy answers with its name (a foreign socket answers otherwise)."""
        info = dict(line.partition(": ")[::2] for line in (await self.command("show info")).splitlines())
        if info.get("Name") != "HAProxy":
            raise RuntimeApiError(f"{self.address} is not HAProxy's runtime API (`show info` says no HAProxy)")
        return f"pid {info.get('Pid', '?')} started {info.get('Start_time_sec', '?')}"

    async def backends(self) -> set[str]:
        return {line.strip() for line in (await self.command("show backend")).splitlines()
                if line.strip() and not line.startswith("#")}

    async def maps(self) -> set[str]:
        """The files of HAProxy's maps (`show map`: `ID (FILE) description`)."""
        return {line.split("(", 1)[1].split(")", 1)[0] for line in (await self.command("show map")).splitlines()
                if not line.startswith("#") and "(" in line}

    async def map_entries(self, name: str) -> dict[str, str]:
        """`show map FILE`: one `ADDRESS KEY VALUE` line an entry."""
        rows = [line.split() for line in (await self.command(f"show map {name}")).splitlines()]
        return {row[1]: row[2] for row in rows if len(row) == 3}

    async def slots(self) -> list[Slot]:
        """Every server of every backend, from `show servers state`."""
        rows = _table(await self.command("show servers state"), " ")
        return [Slot(r["be_name"], r["srv_name"], _address(r), admin_state(int(r.get("srv_admin_state") or 0)))
                for r in rows]

    async def sessions(self) -> dict[tuple[str, str], int]:
        """(backend, server) -> requests it holds now (sessions plus queued), from `show stat`."""
        rows = _table(await self.command("show stat"), ",")
        return {(r["pxname"], r["svname"]): _int(r.get("scur")) + _int(r.get("qcur")) for r in rows
                if r.get("svname") not in ("FRONTEND", "BACKEND")}


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """HAProxy closes the connection after its answer (read() alone may return a part of it)."""
    chunks, size = [], 0
    while size < ANSWER_LIMIT and (chunk := await reader.read(65536)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _table(text: str, separator: str) -> list[dict[str, str]]:
    """Rows of HAProxy's tables: a `# name name ...` header line, then one line a row."""
    header: list[str] = []
    rows = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = [h for h in line[2:].split(separator) if h]
        elif header and line.strip():
            rows.append(dict(zip(header, line.split(separator))))
    return rows


def _address(row: dict[str, str]) -> str:
    address, port = row.get("srv_addr", ""), row.get("srv_port", "0")
    return address if port in ("0", "") else f"{address}:{port}"


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0
