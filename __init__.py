"""synsup: a process supervisor for Synapse deployments with workers.

The repository root is this package (see docs/design.md, "Packaging"): `synsup.supervisor`
is the generic engine and CLI, `synsup.units` the Synapse knowledge."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synsup")
except PackageNotFoundError:  # pragma: no cover - imported from a checkout that is not installed
    __version__ = "0+unknown"
