"""synsup: a process supervisor for Synapse deployments with workers.

The repository root is this package (see docs/design.md, "Packaging"): `synsup.supervisor`
is the generic engine and CLI, `synsup.units` the Synapse knowledge."""

from functools import cache


@cache
def version() -> str:
    """synsup's installed version. importlib.metadata (email, zipfile, csv: about 2.7 MB of the
    daemon's RSS) is imported only when the version is asked for."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version
    try:
        return installed_version("synsup")
    except PackageNotFoundError:  # pragma: no cover - imported from a checkout that is not installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
