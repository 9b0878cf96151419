"""synsup: a process supervisor for Synapse deployments with workers.

The repository root is this package (see docs/design.md, "Packaging"): `synsup.supervisor`
is the generic engine and CLI, `synsup.units` the Synapse knowledge."""

import os
import sys
from functools import cache


@cache
def version() -> str:
    """synsup's installed version, read from its METADATA on sys.path (importlib.metadata would
    do the same with email, zipfile and csv: about 3 MB of the daemon's RSS, as `status` asks)."""
    found = _metadata_version()
    if found is not None:
        return found
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version
    try:  # pragma: no cover - an install without a dist-info directory (an egg, a zip)
        return installed_version("synsup")
    except PackageNotFoundError:  # pragma: no cover - imported from a checkout that is not installed
        return "0+unknown"


def _metadata_version() -> str | None:
    """The Version: of the first synsup-*.dist-info on sys.path, as importlib.metadata finds it."""
    for entry in sys.path:
        try:
            names = sorted(n for n in os.listdir(entry or ".") if n.startswith("synsup-") and n.endswith(".dist-info"))
        except OSError:
            continue
        for name in names:
            found = _version_in(os.path.join(entry or ".", name, "METADATA"))
            if found is not None:
                return found
    return None


def _version_in(metadata: str) -> str | None:
    try:
        with open(metadata, encoding="utf-8") as f:
            for line in iter(f.readline, "\n"):  # the headers end at the first empty line
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line:
                    break
    except OSError:
        pass
    return None


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
