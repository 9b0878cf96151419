"""`synsup restart [UNIT...]`, `stop UNIT`, `start UNIT`, `pause`, `resume` given on one node act
on the node that runs each unit, or on every node (issue 18; `--node N`: that node only). Which
node gets what is `route`; each request is a key, requests/<node>/<id>, which that node's daemon
sees (it follows the cluster's prefix), carries out as it would a request given there, and
answers in the same key (state done, with its reply); the asking daemon waits for that answer,
then deletes the key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SynsupError
from .membership import Keys
from .store import Store

VERBS = ("restart", "stop", "start", "pause", "resume")
HALT = "halt"  # a step of a cluster stop (cluster/cluster_stop.py): stop these units now, ahead of the queue
UPGRADE = "upgrade"  # `synsup upgrade --node N` given on another node: N's single-host upgrade
WITHOUT_UNITS = ("restart", "pause", "resume")  # given without units: every node (stop: the daemon; start: none)
ANSWER_WAIT = 120.0  # seconds the asking daemon waits for the owning node's answer
ANSWER_POLL = 0.1  # one read of one key: works with any store (and in memory, without a watch)
ALIVE_EVERY = 10  # polls between two looks at the asked node's member key (`alive`)


class NodeDown(SynsupError):
    """The asked node went down (its member key is gone) before it answered."""


def requests_of(keys: Keys, node: str) -> str:
    return f"{keys.prefix}requests/{node}/"


def route(units: Sequence[str], node_of: Mapping[str, str], nodes: Sequence[str], here: str,
          only: str | None) -> dict[str, list[str]]:
    """node -> the units named that it runs ([]: none named, every unit of its own), for a request
    given on node `here`; `only` (--node N) keeps that node, and refuses a unit another runs. A
    unit no node runs goes to `here`, which says what is wrong with it."""
    if only is not None and only not in nodes:
        raise SynsupError(f"--node {only}: not a node of the cluster (its nodes: {', '.join(nodes)})")
    if not units:
        return {n: [] for n in nodes if only in (None, n)}
    by_node: dict[str, list[str]] = {}
    for unit in units:
        by_node.setdefault(node_of.get(unit, here), []).append(unit)
    for node, named in by_node.items():
        if only is not None and node != only:
            raise SynsupError(f"--node {only}: {', '.join(named)} {'runs' if len(named) == 1 else 'run'} on "
                              f"node {node}, not {only}")
    return by_node


async def ask(store: Store, keys: Keys, node: str, verb: str, units: Sequence[str],
              timeout: float = ANSWER_WAIT, options: Mapping[str, Any] | None = None,
              watch_member: bool = False) -> dict[str, Any]:
    """The node's reply; SynsupError when it does not answer within `timeout`. `options`: the
    request's other fields (rolling, force, local). `watch_member`: NodeDown as soon as the
    node's member key is gone (its daemon ended, or its lease expired), not after `timeout`."""
    key = f"{requests_of(keys, node)}{uuid.uuid4().hex[:12]}"
    request = {"verb": verb, "units": list(units), **({"options": dict(options)} if options else {}), "state": "pending"}
    await store.put(key, json.dumps(request).encode())
    try:
        async with asyncio.timeout(timeout):
            polls = 0
            while (answer := await _answer(store, key)) is None:
                polls += 1
                if watch_member and polls % ALIVE_EVERY == 0 and await store.get(keys.member(node)) is None:
                    raise NodeDown(f"node {node} went down before it answered `{verb}`")
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
        if request.get("state") == "pending" and request.get("verb") in (*VERBS, HALT, UPGRADE):
            found.append((kv.key, request))
    return found


async def answer(store: Store, key: str, reply: dict[str, Any]) -> None:
    """Done: the reply, in the request's key (only if it is still there: the asker may have given up)."""
    if await store.get(key) is not None:
        await store.put(key, json.dumps({"state": "done", "reply": reply}).encode())
