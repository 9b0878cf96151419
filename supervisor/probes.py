"""Health probes over plain asyncio streams: cheap enough to run every 10 s on hundreds of units."""

from __future__ import annotations

import asyncio
import ssl

from .spec import HttpProbe, Probe, RedisProbe


class ProbeFailed(Exception):
    pass


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # loopback health check of our own child
    return context


async def _connect(host: str | None, port: int | None, path: str | None, tls: bool):
    context = _tls_context() if tls else None
    if path:
        return await asyncio.open_unix_connection(path, ssl=context, server_hostname="" if tls else None)
    return await asyncio.open_connection(host, port, ssl=context)


async def _http(probe: HttpProbe) -> None:
    reader, writer = await _connect(probe.host, probe.port, probe.path, probe.tls)
    try:
        host = probe.host or "localhost"
        writer.write(f"GET {probe.url_path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        status = await reader.readline()
    finally:
        writer.close()
    parts = status.split()
    if len(parts) < 2 or parts[1] != b"200":
        raise ProbeFailed(f"{probe.describe()} answered {status.decode(errors='replace').strip()!r}")


def _command(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n"]
    for word in words:
        out.append(f"${len(word.encode())}\r\n{word}\r\n")
    return "".join(out).encode()


async def _redis(probe: RedisProbe) -> None:
    reader, writer = await _connect(probe.host, probe.port, probe.path, probe.tls)
    try:
        if probe.password:
            writer.write(_command("AUTH", probe.password))
            reply = await reader.readline()
            if not reply.startswith(b"+OK"):
                raise ProbeFailed(f"{probe.describe()} refused AUTH: {reply.decode(errors='replace').strip()}")
        writer.write(_command("PING"))
        reply = await reader.readline()
    finally:
        writer.close()
    if not reply.startswith(b"+PONG"):
        raise ProbeFailed(f"{probe.describe()} answered PING with {reply.decode(errors='replace').strip()!r}")


async def check(probe: Probe, timeout: float) -> str | None:
    """None when healthy, else why not."""
    try:
        async with asyncio.timeout(timeout):
            await (_http(probe) if isinstance(probe, HttpProbe) else _redis(probe))
    except ProbeFailed as e:
        return str(e)
    except TimeoutError:
        return f"{probe.describe()} did not answer within {timeout:g}s"
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as e:
        return f"{probe.describe()}: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
    return None


async def check_all(probes: tuple[Probe, ...], timeout: float) -> str | None:
    if not probes:
        return None
    results = await asyncio.gather(*(check(p, timeout) for p in probes))
    failures = [r for r in results if r]
    return "; ".join(failures) if failures else None
