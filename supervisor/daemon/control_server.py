"""The control socket: one JSON request and JSON replies per line, own uid and root only.

The server reads the whole request before it answers (a refusal included), so a client
always gets its one-line answer instead of a broken pipe; it admits a bounded number of
connections and drops a connection that sends no request in time. A request with `"ack":
true` is answered `{"ok": true, "taken": true}` as soon as the daemon takes it: the client
waits a short time for that (a frozen daemon is reported, not waited for), then as long as
the operation takes. A request whose client hung up before the daemon took it is dropped."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import structlog

from ..engine.process import return_free_heap
from ..errors import NotRunning, SynsupError
from ..protocol import Refusal, Reply, Request, read_reply

R = TypeVar("R")
Send = Callable[[Reply | dict[str, Any]], Awaitable[None]]  # a dict: a reply passed on as it came (--cluster)
Handler = Callable[[dict[str, Any], Send], Awaitable[None]]

MAX_CONNECTIONS = 256
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send its request line
MAX_REQUEST = 64 * 1024
ACCEPT_TIMEOUT = 10.0  # seconds a client waits for the daemon to take its request
TAKEN = {"ok": True, "taken": True}


def reply_line(reply: Reply | dict[str, Any]) -> bytes:
    return (json.dumps(reply if isinstance(reply, dict) else reply.as_json()) + "\n").encode()

log = structlog.get_logger()


class ControlError(SynsupError):
    pass


class ControlTimeout(ControlError):
    pass


class DaemonNotAnswering(ControlError):
    pass


def _hung_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """The client closed its end (gave up) before we took its request."""
    if reader.at_eof():
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.fromfd(sock.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as peek:  # a dup: the transport keeps its own
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def allowed(uid: int) -> bool:
    return uid in (os.getuid(), 0)


class ControlServer:
    def __init__(self, path: str, handler: Handler, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.path = path
        self.handler = handler
        self.max_connections, self.request_timeout = max_connections, request_timeout
        self.connections = 0
        self.dropped = 0  # requests whose client had hung up before we took them
        self._server: asyncio.Server | None = None

    @property
    def fileno(self) -> int | None:
        """The listening socket's fd (passed across a re-exec)."""
        sockets = self._server.sockets if self._server is not None else ()
        return sockets[0].fileno() if sockets else None

    async def start(self, inherited_fd: int | None = None) -> None:
        """Listen at the path; or, after a re-exec, on the listening socket the old image passed."""
        if inherited_fd is not None:
            sock = socket.socket(fileno=inherited_fd)
            os.set_inheritable(inherited_fd, False)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST)
            return
        if os.path.lexists(self.path):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = False

        async def send(reply: Reply | dict[str, Any]) -> None:
            nonlocal answered
            answered = answered or reply is not TAKEN
            writer.write(reply_line(reply))
            await writer.drain()

        self.connections += 1
        try:
            if self.connections > self.max_connections:
                writer.write(reply_line(Refusal("synsup is busy: too many control connections; try again")))
                return
            request = await self._read_request(reader)
            uid = peer_uid(writer.get_extra_info("socket"))
            if not allowed(uid):
                await send(Refusal(f"uid {uid} may not control this synsup daemon "
                                   f"(only uid {os.getuid()} and root); run as that user"))
            elif isinstance(request, str):
                await send(Refusal(request))
            elif not await self._take(request, reader, writer, send):
                return
            else:
                await self._handle(request, send)
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            if not answered:  # the daemon is stopping under the request: say so, not a bare hang-up
                writer.write(reply_line(Refusal("synsup is stopping")))
        finally:
            self.connections -= 1
            writer.close()
            if not self.connections:
                return_free_heap()  # a reply for every unit (status: 500 units, 0.3 MB) leaves a freed peak

    async def _take(self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    send: Send) -> bool:
        """Take the request (telling the client, if it asked), or drop it if its client is gone."""
        if _hung_up(reader, writer):
            self.dropped += 1
            log.warning("control.request_dropped", request=str(request)[:200], reason="the client hung up first")
            return False
        if request.pop("ack", None) is True:
            await send(TAKEN)
        return True

    async def _read_request(self, reader: asyncio.StreamReader) -> dict[str, Any] | str:
        """The request, or why there is none (as the error to answer)."""
        try:
            async with asyncio.timeout(self.request_timeout):
                line = await reader.readline()
        except TimeoutError:
            return f"no request within {self.request_timeout:g}s"
        except (ValueError, asyncio.LimitOverrunError):
            return f"the request is longer than {MAX_REQUEST} bytes"
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep ([[[[...)
            return "the request is not JSON"
        return request if isinstance(request, dict) else "the request is not a JSON object"

    async def _handle(self, request: dict[str, Any], send: Send) -> None:
        try:
            await self.handler(request, send)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug in one request never takes the daemon down
            log.exception("control.request_failed", request=str(request)[:200])
            await send(Refusal(f"internal error: {type(e).__name__}: {e}"))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class ControlClient:
    """One request; its replies. The daemon must take the request within `accept_timeout`
    (DaemonNotAnswering otherwise), then answer within `timeout` (ControlTimeout)."""

    def __init__(self, path: str, timeout: float | None = 10.0, accept_timeout: float = ACCEPT_TIMEOUT) -> None:
        self.timeout, self.accept_timeout = timeout, accept_timeout
        self.path = path
        self.taken = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(accept_timeout)
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise NotRunning(os.path.dirname(path)) from None
        except PermissionError:
            self.sock.close()
            raise ControlError(f"{path}: permission denied; run as the daemon's user or root") from None
        except OSError as e:
            self.sock.close()
            raise ControlError(f"{path}: cannot connect: {e.strerror or e}") from None
        self._file = self.sock.makefile("rb")
        self.cmd = ""  # of the request sent: how its replies are read

    def not_answering(self) -> DaemonNotAnswering:
        return DaemonNotAnswering(
            f"the synsup daemon does not answer on {self.path}: it took no request within "
            f"{self.accept_timeout:g}s (hung, or stopped with SIGSTOP: `kill -CONT PID` with the pid in "
            "daemon.json of the state dir); nothing was sent to it that it will act on later")

    def send(self, request: Request | dict[str, Any]) -> None:
        """A request (a raw dict only where a test sends what no client would)."""
        payload = request.as_json() if isinstance(request, Request) else request
        self.cmd = str(payload.get("cmd"))
        self.sock.settimeout(self.accept_timeout)
        try:
            self.sock.sendall((json.dumps({**payload, "ack": True}) + "\n").encode())
        except (BrokenPipeError, ConnectionResetError):
            # the daemon answered and closed before reading all of it: its answer says why
            for _ in self.replies():
                break
            raise ControlError("the daemon closed the connection without answering") from None
        except TimeoutError:
            raise self.not_answering() from None

    def _line(self) -> bytes:
        try:
            return self._file.readline()
        except TimeoutError:
            if not self.taken:
                raise self.not_answering() from None
            raise ControlTimeout(f"no answer from the daemon within {self.timeout:g}s") from None
        except ConnectionResetError:
            return b""

    def replies(self) -> Iterator[dict[str, Any]]:
        while line := self._line():
            try:
                reply = json.loads(line)
            except ValueError:
                raise ControlError("the daemon's answer is not JSON") from None
            if not isinstance(reply, dict):
                raise ControlError("the daemon's answer is not a JSON object")
            if reply == TAKEN:
                self.taken = True  # taken: now it may take as long as the operation does
                self.sock.settimeout(self.timeout)
                continue
            if reply.get("ok") is False:
                raise ControlError(str(reply.get("error") or "the daemon refused the request"))
            yield reply

    def answers(self) -> Iterator[Reply]:
        """The replies, each as the dataclass the daemon built (protocol.read_reply)."""
        for reply in self.replies():
            yield read_reply(self.cmd, reply)

    def ask(self, request: Request, kind: type[R]) -> R:
        """The one reply to `request`, which must be a `kind`."""
        self.send(request)
        for reply in self.answers():
            if not isinstance(reply, kind):
                raise ControlError(f"the daemon's answer to {request.cmd} is no {kind.__name__}")
            return reply
        raise ControlError("the daemon closed the connection without answering")

    def request(self, request: Request | dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        for reply in self.replies():
            return reply
        raise ControlError("the daemon closed the connection without answering")

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
