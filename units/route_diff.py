"""`synsup routes --diff PREVIOUS`: what changed between a file `synsup routes` printed before
(the one the proxy runs, in either format) and the routes of the deployment now, read from the
`# route CATEGORY: ...` comment each generated file opens with."""

from __future__ import annotations

from .model import Finding

ROUTE_LINE = "# route "


def routes_in(text: str) -> dict[str, str]:
    """category -> where it goes, from a generated file's summary comments."""
    found = {}
    for line in text.splitlines():
        if line.startswith(ROUTE_LINE):
            category, _, where = line.removeprefix(ROUTE_LINE).partition(": ")
            found[category] = where
    return found


def read_previous(path: str) -> tuple[dict[str, str], Finding | None]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        return {}, Finding("error", path, None, f"cannot read it ({e.strerror or e}); pass the file "
                                                "`synsup routes` printed before")
    found = routes_in(text)
    if not found:
        return {}, Finding("error", path, None, "has no `# route` lines; pass a file `synsup routes` printed")
    return found, None


def route_changes(previous: dict[str, str], now: dict[str, str]) -> list[str]:
    """One line a category that changed, appeared or went; [] when nothing did."""
    lines = []
    for category in list(now) + [c for c in previous if c not in now]:
        before, after = previous.get(category, "(none)"), now.get(category, "(none)")
        if before != after:
            lines.append(f"{category}: {before} -> {after}")
    return lines
