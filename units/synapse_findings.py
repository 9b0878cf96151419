"""What Synapse's own config loader said, as findings: in words rather than Python reprs, at
the key it is about (a nested key or list item, in whichever file sets it), one finding per
mistake: one for all the processes that reject the same line, none where synsup's own rules
already report that key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .model import Deployment, Finding, LayeredConfig, Process, error
from .rules_processes import who
from .yamldoc import Where, YamlMap, where

Path = tuple[Any, ...]
# the key that turns on what each of matrix-synapse's extras is for
EXTRA_KEYS = {"url-preview": "url_preview_enabled", "redis": "redis", "oidc": "oidc_providers",
              "jwt": "jwt_config", "opentracing": "opentracing", "saml2": "saml2_config", "sentry": "sentry"}
ATTRS_IN = re.compile(r"^ValueError: ('\w+' must be in) \{([^}]*)\}")
UNEXPECTED_KEY = re.compile(r"^TypeError: (\w+)\.__init__\(\) got an unexpected keyword argument ('[^']*')")


def one_line(message: str, limit: int = 240) -> str:
    """Synapse's message on one line; past `limit`, only its sentences up to the limit."""
    text = " ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[: cut + 1] if cut > 0 else text[:limit] + "..."


def _in_words(text: str) -> str:
    """attrs' and Python's phrasings as an admin would say them."""
    text = ATTRS_IN.sub(lambda m: m.group(1).replace("must be in", "must be one of") + " " + ", ".join(
        sorted(o.strip().strip("'\"") for o in m.group(2).split(","))), text)
    return UNEXPECTED_KEY.sub(lambda m: f"unknown key {m.group(2)} (Synapse's {m.group(1)} has no such key)", text)


def _dependency(result: dict) -> str:
    missing = [str(m) for m in result.get("missing") or []]
    extras = sorted({e for m in missing for e in (result.get("extras") or {}).get(m, [])})
    install = (f'pip install "matrix-synapse[{",".join(extras)}]"' if extras
               else f"pip install {' '.join(missing)}")
    return (f"it needs {', '.join(missing)}, which is not installed: install it into Synapse's virtualenv "
            f"with `{install}`")


def phrase(result: Any) -> str:
    if isinstance(result, dict) and "missing" in result:
        return _dependency(result)
    text = result["message"] if isinstance(result, dict) else str(result)
    return one_line(_in_words(text)).rstrip(".") + "; fix it as Synapse says"


def _nodes(container: Any, path: Path = ()) -> Iterator[tuple[Path, Any, Any, Any]]:
    """(path, container, key, value) for every key and list item, parents first."""
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        yield path + (key,), container, key, value
        if isinstance(value, dict | list):
            yield from _nodes(value, path + (key,))


def _at_path(config: LayeredConfig, path: list) -> Where | None:
    for layer in reversed(config.layers):
        container, at = layer, None
        for key in path:
            if not isinstance(container, dict) or key not in container:
                break
            at, container = where(container, key), container[key]
        if at is not None:
            return at
    return None


def _matches(value: Any, quoted: str) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) == quoted


def _at_quoted(config: LayeredConfig, message: str) -> Where | None:
    """The value (or key) the message quotes; where several do, the one under keys it names."""
    quoted = set(re.findall(r"'([^']+)'", message))
    best: tuple[tuple[int, bool], Where] | None = None
    for layer in reversed(config.layers):
        for path, container, key, value in _nodes(layer):
            is_value = any(_matches(value, q) for q in quoted)
            if is_value or str(key) in quoted:
                named = path if is_value else path[:-1]  # a quoted key does not count as naming itself
                score = (sum(1 for part in named if isinstance(part, str) and part in message), is_value)
                if best is None or score > best[0]:
                    best = (score, where(container, key))
    return best[1] if best else None


def locate(p: Process, result: Any, message: str) -> Where:
    if isinstance(result, dict) and "missing" in result:
        keys = [EXTRA_KEYS[e] for extras in (result.get("extras") or {}).values() for e in extras if e in EXTRA_KEYS]
        return _at_path(p.config, keys[:1]) or p.at()
    path = list(result.get("path") or []) if isinstance(result, dict) else []
    return _at_path(p.config, path) or _at_quoted(p.config, message) or p.at()


def synapse_findings(d: Deployment, results: dict) -> list[Finding]:
    """One finding per place (or, where no key is found, per message), naming the processes."""
    groups: dict[Any, tuple[Where, str, list[str]]] = {}
    for p in d.processes:
        result = results.get(p.name)
        if not result:
            continue
        message = phrase(result)
        at = locate(p, result, message)
        group = (at.file, at.line) if at != p.at() else message
        groups.setdefault(group, (at, message, []))[2].append(p.name)
    return [error(at, f"{who(d, names)}: Synapse rejects this config: {message}")
            for at, message, names in groups.values()]


def _paths_by_line(doc: YamlMap) -> dict[int, Path]:
    lines: dict[int, Path] = {}
    for path, container, key, _ in _nodes(doc):
        line = where(container, key).line
        if line is not None:
            lines.setdefault(line, path)
    return lines


def _place(index: dict[str, dict[int, Path]], f: Finding) -> tuple[str, Path] | None:
    path = index.get(f.file, {}).get(f.line or 0)
    return (f.file, path[:2]) if path else None


def _related(a: tuple[str, Path], b: tuple[str, Path]) -> bool:
    return a[0] == b[0] and (a[1][:len(b[1])] == b[1] or b[1][:len(a[1])] == a[1])


def without_repeats(synapse: list[Finding], own: list[Finding], d: Deployment) -> list[Finding]:
    """Synapse's findings but those at a key (or its parent or child) synsup's own errors report."""
    docs = list(d.shared.layers) + list(d.extra.get("worker_docs", [])) + list(d.extra.get("main_files", []))
    index = {doc.file: _paths_by_line(doc) for doc in docs}
    taken = [place for f in own if f.severity == "error" and (place := _place(index, f))]
    return [f for f in synapse if not ((place := _place(index, f)) and any(_related(place, t) for t in taken))]
