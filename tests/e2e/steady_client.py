"""A client at a steady rate, straight at a process or through the front door (the e2e tests
and contrib/bench/topology.py, upgrade.py): one message every 1/rate s, each retried with its
transaction id until it succeeds, and /sync long-polls one after another beside it, as a Matrix
client does. Every failed attempt (an error status, a refused or cut connection) is a failed
request, with its time; each message's first try and success are kept: the longest of them is
the longest stall the client saw."""

from __future__ import annotations

import collections
import threading
import time
import urllib.parse

from e2e.matrix import Client

SYNC_TIMEOUT_MS = 10000  # a long-poll returns at once when a message arrives, so this rarely runs out


class SteadySender(threading.Thread):
    """One message `{prefix} {i}` every 1/rate s into `room`, each retried with its transaction id."""

    def __init__(self, client: Client, room: str, rate: float, prefix: str = "b") -> None:
        super().__init__(daemon=True)
        self.client, self.room, self.interval, self.prefix = client, room, 1.0 / rate, prefix
        self.sent: list[str] = []
        self.failures: list[float] = []
        self.errors: list[str] = []
        self.spans: list[tuple[float, float]] = []  # (first try, success) of each message
        self.stopping = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        for i in range(10**6):
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return
            self._send(f"{self.prefix} {i}", f"{self.prefix}-{i}")
            due += self.interval

    def _send(self, text: str, txn: str) -> None:
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room)}/send/m.room.message/{txn}"
        delay, began = 0.1, time.time()
        while not self.stopping.is_set():
            try:
                status, reply = self.client.request("PUT", path, {"msgtype": "m.text", "body": text}, timeout=30)
                if status == 200:
                    self.sent.append(text)
                    self.spans.append((began, time.time()))
                    return
                self._failed(f"PUT {status} {str(reply)[:100]}")
            except (OSError, ValueError) as e:  # refused, reset, timed out, or a reply that is not JSON
                self._failed(f"PUT {e}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _failed(self, error: str) -> None:
        self.failures.append(time.time())
        self.errors.append(error)

    def failed_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.failures)

    def stall_between(self, start: float, end: float) -> float:
        """The longest a message waited (first try to success) of those waiting at some time in [start, end]."""
        return max((b - a for a, b in self.spans if b >= start and a <= end), default=0.0)

    def outage_between(self, start: float, end: float) -> float:
        """Seconds in [start, end] during which a message was waiting after a failed try."""
        failed_first = [(a, b) for a, b in self.spans if any(a <= t <= b for t in self.failures)]
        spans = sorted((max(a, start), min(b, end)) for a, b in failed_first if b >= start and a <= end)
        total, reach = 0.0, start
        for a, b in spans:
            total += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        return total


class Syncer(threading.Thread):
    """/sync long-polls from the last next_batch, one after another; a failure is retried after 0.1 s."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.requests = 0
        self.failures: list[float] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        since = ""
        while not self.stopping.is_set():
            self.requests += 1
            try:
                status, reply = self.client.request(
                    "GET", f"/_matrix/client/v3/sync?timeout={SYNC_TIMEOUT_MS}{since}", timeout=SYNC_TIMEOUT_MS / 1000 + 30)
                if status == 200:
                    since = f"&since={urllib.parse.quote(reply['next_batch'])}"
                    continue
                error = f"GET /sync {status} {str(reply)[:100]}"
            except (OSError, ValueError, KeyError) as e:
                error = f"GET /sync {e}"
            self.failures.append(time.time())
            self.errors.append(error)
            self.stopping.wait(0.1)


class SteadyClient:
    """A SteadySender and a Syncer on one client; `finish()` stops both."""

    def __init__(self, client: Client, room: str, rate: float, prefix: str = "b", sync: bool = True) -> None:
        self.client, self.room, self.prefix = client, room, prefix
        self.sender = SteadySender(client, room, rate, prefix)
        self.syncer = Syncer(client) if sync else None

    def start(self) -> SteadyClient:
        self.sender.start()
        if self.syncer:
            self.syncer.start()
        return self

    def finish(self) -> None:
        for thread in filter(None, (self.sender, self.syncer)):
            thread.stopping.set()
        for thread in filter(None, (self.sender, self.syncer)):
            thread.join(60)

    @property
    def failures(self) -> list[float]:
        return self.sender.failures + (self.syncer.failures if self.syncer else [])

    @property
    def errors(self) -> list[str]:
        return self.sender.errors + (self.syncer.errors if self.syncer else [])

    @property
    def requests(self) -> int:
        return len(self.sender.sent) + len(self.sender.failures) + (self.syncer.requests if self.syncer else 0)

    def failed_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.failures)

    def lost_and_duplicated(self) -> tuple[list[str], list[str]]:
        """Messages sent that the room does not hold, and messages it holds more than once."""
        seen = collections.Counter(t for t in self.client.texts(self.room) if t.startswith(self.prefix + " "))
        return [t for t in self.sender.sent if t not in seen], [t for t, n in seen.items() if n > 1]
