"""A tiny Matrix client for the end-to-end tests: stdlib only, retries like a real client."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class MatrixError(Exception):
    pass


class Client:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                body = e.read()
                try:
                    return e.code, json.loads(body or b"{}")
                except ValueError:  # a proxy's own error page
                    return e.code, {"error": body.decode(errors="replace").strip()[:200]}
            finally:
                e.close()

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = self.request(method, path, body)
        if status != 200:
            raise MatrixError(f"{method} {path}: {status} {reply}")
        return reply

    def register(self, shared_secret: str, user: str, password: str) -> None:
        """Shared-secret registration through the admin API (what register_new_matrix_user does)."""
        nonce = self.ok("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), user.encode(), password.encode(), b"notadmin"]))
        self.ok("POST", "/_synapse/admin/v1/register", {"nonce": nonce, "username": user, "password": password,
                                                        "admin": False, "mac": mac.hexdigest()})

    def login(self, user: str, password: str) -> str:
        reply = self.ok("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
        self.token = reply["access_token"]
        return self.token

    def create_room(self) -> str:
        return self.ok("POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"})["room_id"]

    def send(self, room: str, txn: str, text: str, deadline: float = 180) -> str:
        """PUT with a transaction id, retried with the same id until it succeeds, as clients do."""
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/{txn}"
        give_up = time.monotonic() + deadline
        delay = 0.1
        while True:
            try:
                status, reply = self.request("PUT", path, {"msgtype": "m.text", "body": text}, timeout=30)
                if status == 200:
                    return reply["event_id"]
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > give_up:
                raise MatrixError(f"could not send {text!r} within {deadline}s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def texts(self, room: str) -> list[str]:
        """Every m.room.message body in the room, oldest first."""
        bodies: list[str] = []
        query = {"dir": "b", "limit": "500"}
        while True:
            path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/messages?{urllib.parse.urlencode(query)}"
            reply = self.ok("GET", path)
            bodies += [e["content"].get("body") for e in reply.get("chunk", []) if e.get("type") == "m.room.message"]
            if not reply.get("chunk") or "end" not in reply:
                return list(reversed(bodies))
            query["from"] = reply["end"]
