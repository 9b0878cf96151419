"""The version of the Synapse that `--python` would run, and the keys it rejects."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .model import Deployment, Finding, error
from .roles import STREAMS_SINCE
from .yamldoc import Where, where

LEGACY_ENDPOINT_KEYS = ("worker_replication_host", "worker_replication_http_port", "worker_replication_http_tls")


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def unknown_streams(d: Deployment, version: str) -> Iterator[tuple[Where, str, str]]:
    """(where, stream, release that added it) for each stream_writers key `version` does not know."""
    writers = d.shared.get("stream_writers")
    for stream in writers if isinstance(writers, dict) else []:
        since = STREAMS_SINCE.get(stream)
        if since and parse_version(version) < since:
            yield where(writers, stream), stream, f"{since[0]}.{since[1]}"


def version_rules(d: Deployment, version: str) -> Iterator[Finding]:
    for at, stream, since in unknown_streams(d, version):
        yield error(at, f"stream_writers.{stream}: Synapse {version} does not know this stream (added in "
                    f"{since}) and refuses the config; remove it, or upgrade Synapse first")
    number = parse_version(version)
    if number >= (1, 88):
        for w in d.workers:
            for key in LEGACY_ENDPOINT_KEYS:
                if key in w.config:
                    yield error(w.at(key), f"{w.name}: Synapse {version} rejects `{key}` (removed in "
                                "1.88); put main into instance_map (`instance_map: {main: {host, port}}`) "
                                "and remove the worker_replication_* keys")
    elif number < (1, 84) and d.workers:
        instance_map = d.shared.get("instance_map")
        if isinstance(instance_map, dict) and "main" in instance_map:
            yield error(d.shared.where("instance_map"), f"Synapse {version} does not read "
                        "instance_map.main (added in 1.84); give each worker `worker_replication_host` "
                        "and `worker_replication_http_port`, or upgrade Synapse")
