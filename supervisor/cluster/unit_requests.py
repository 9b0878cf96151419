"""`synsup restart|stop|start UNIT` given on one node for a unit another node runs (issue 18):
the request is a key, requests/<node>/<id>, which the owning node's daemon sees (it follows the
cluster's prefix), carries out as an operation of its own and answers in the same key (state
done, with its reply); the asking daemon waits for that answer, then deletes the key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import SynsupError
from .membership import Keys
from .store import Store

VERBS = ("restart", "stop", "start")
ANSWER_WAIT = 120.0  # seconds the asking daemon waits for the owning node's answer
ANSWER_POLL = 0.1  # one read of one key: works with any store (and in memory, without a watch)


def requests_of(keys: Keys, node: str) -> str:
    return f"{keys.prefix}requests/{node}/"


async def ask(store: Store, keys: Keys, node: str, verb: str, units: Sequence[str],
              timeout: float = ANSWER_WAIT) -> dict[str, Any]:
    """The owning node's reply; SynsupError when it does not answer within `timeout`."""
    key = f"{requests_of(keys, node)}{uuid.uuid4().hex[:12]}"
    await store.put(key, json.dumps({"verb": verb, "units": list(units), "state": "pending"}).encode())
    try:
        async with asyncio.timeout(timeout):
            while (answer := await _answer(store, key)) is None:
                await asyncio.sleep(ANSWER_POLL)
            return answer
    except TimeoutError:
        pass
    finally:
        await store.delete(key)
    raise SynsupError(f"node {node} did not answer `{verb} {' '.join(units)}` within {timeout:.0f}s "
                      "(see `synsup status --cluster`)")


async def _answer(store: Store, key: str) -> dict[str, Any] | None:
    kv = await store.get(key)
    done = json.loads(kv.value) if kv is not None else {}
    return dict(done["reply"]) if done.get("state") == "done" else None


async def pending(store: Store, keys: Keys, node: str) -> list[tuple[str, dict[str, Any]]]:
    """The requests for `node` not answered yet: (key, {"verb", "units"})."""
    found = []
    for kv in await store.get_prefix(requests_of(keys, node)):
        try:
            request = json.loads(kv.value)
        except ValueError:
            continue
        if request.get("state") == "pending" and request.get("verb") in VERBS:
            found.append((kv.key, request))
    return found


async def answer(store: Store, key: str, reply: dict[str, Any]) -> None:
    """Done: the reply, in the request's key (only if it is still there: the asker may have given up)."""
    if await store.get(key) is not None:
        await store.put(key, json.dumps({"state": "done", "reply": reply}).encode())
